"""integrations/github.py through the real PyGithub against the GitHub stub: auth, tokens, calls, errors."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

from envhub.errors import (
    GithubNotFound,
    GithubRateLimited,
    GithubUnauthorized,
    GithubUnavailable,
)
from envhub.integrations.github import TOKENS, GithubAccess, GithubClient
from tests.support.github_stub import GithubStub, github_stub

MARKER = "<!-- envhub:pull-request -->"


def app_client(stub: GithubStub, **options: float) -> GithubClient:
    key = stub.private_keys.get(42) or stub.add_app(42)
    if 7 not in stub.installations:
        stub.install(42, 7, "acme/shop")
    return GithubClient(GithubAccess(stub.api_url, "app", key, 42, 7), "acme/shop", **options)


def test_app_auth_mints_one_installation_token_and_reuses_it_across_clients(stub: GithubStub) -> None:
    first = app_client(stub)
    info = first.repository_info()
    assert (info.full_name, info.default_branch, info.private) == ("acme/shop", "main", True)
    assert info.permissions
    assert info.permissions["push"]
    clients = [app_client(stub) for _ in range(4)]
    threads = [threading.Thread(target=c.open_pull_requests) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert stub.count("POST", "/app/installations/7/access_tokens") == 1
    assert stub.count(path="/repos/", auth="installation") == 5
    assert stub.count(auth="jwt") == 1  # the App's JWT only ever mints


def test_an_installation_token_near_its_expiry_is_replaced(stub: GithubStub) -> None:
    stub.token_lifetime = timedelta(minutes=4)  # inside the 5-minute margin: never reused
    client = app_client(stub)
    client.repository_info()
    client.repository_info()
    assert stub.count("POST", "/app/installations/7/access_tokens") == 2
    stub.token_lifetime = timedelta(hours=1)
    TOKENS.forget()
    client.repository_info()
    client.repository_info()
    assert stub.count("POST", "/app/installations/7/access_tokens") == 3


def test_a_wrong_private_key_is_github_unauthorized(stub: GithubStub) -> None:
    stub.add_app(42)
    other = GithubStub().add_app(1)  # a valid key, but not the App's
    stub.install(42, 7, "acme/shop")
    client = GithubClient(GithubAccess(stub.api_url, "app", other, 42, 7), "acme/shop")
    with pytest.raises(GithubUnauthorized) as caught:
        client.repository_info()
    assert caught.value.details["github_status"] == 401


def test_an_installation_without_the_repository_is_github_not_found(stub: GithubStub) -> None:
    stub.add_repo("acme/other")
    client = app_client(stub)
    other = GithubClient(client.access, "acme/other")
    with pytest.raises(GithubNotFound):
        other.repository_info()


def test_token_auth_and_the_pull_request_calls(stub: GithubStub) -> None:
    token = stub.add_token("acme/shop")
    client = GithubClient(GithubAccess(stub.api_url, "token", token), "acme/shop")
    stub.open_pull("acme/shop", head_ref="feat", draft=True, labels=("envhub:skip",))
    second = stub.open_pull("acme/shop", head_ref="fix")
    stub.close_pull("acme/shop", 1)
    stub.open_pull("acme/shop", head_ref="more")
    pulls = client.open_pull_requests()
    assert [(p.number, p.head_ref, p.state) for p in pulls] == [(2, "fix", "open"), (3, "more", "open")]
    assert pulls[0].head_sha == second["head"]["sha"]
    before = stub.count()
    comment = client.create_comment(2, f"Creating…\n{MARKER}")
    client.edit_comment(comment, f"Ready\n{MARKER}")
    assert client.find_comment(2, MARKER) == comment
    assert client.find_comment(3, MARKER) is None
    assert stub.comments_on("acme/shop", 2)[0]["body"] == f"Ready\n{MARKER}"
    deployment = client.create_deployment("fix", "pr-2", transient=True)
    client.create_deployment_status(
        deployment, "success", environment_url="https://pr-2.example", log_url="https://envhub/logs"
    )
    status = stub.repos["acme/shop"].statuses[deployment][-1]
    assert status["environment_url"] == "https://pr-2.example"
    assert status["log_url"] == "https://envhub/logs"
    assert stub.repos["acme/shop"].deployments[deployment]["transient_environment"] is True
    assert stub.count() - before == 6  # one request per call: nothing fetched twice
    assert client.installation_token().token == token
    assert {c.auth for c in stub.calls} == {"token"}


def test_the_git_token_is_scoped_to_the_repository_and_read_only(stub: GithubStub) -> None:
    stub.add_repo("acme/other")
    client = app_client(stub)
    stub.install(42, 7, "acme/shop", "acme/other")
    granted = client.installation_token()
    assert granted.expires_at is not None
    assert client.installation_token() == granted  # reused
    grant = stub.grants[granted.token]
    assert grant.repositories == {"acme/shop"}
    other = GithubClient(GithubAccess(stub.api_url, "token", granted.token), "acme/other")
    with pytest.raises(GithubNotFound):
        other.repository_info()


def test_github_enterprise_through_its_api_v3_prefix() -> None:
    TOKENS.forget()
    with github_stub("/api/v3") as enterprise:
        enterprise.add_repo("corp/app")
        key = enterprise.add_app(5)
        enterprise.install(5, 9, "corp/app")
        assert enterprise.api_url.endswith("/api/v3")
        client = GithubClient(GithubAccess(enterprise.api_url, "app", key, 5, 9), "corp/app")
        assert client.repository_info().full_name == "corp/app"
        enterprise.open_pull("corp/app")
        assert client.create_comment(1, "hi") > 0
        assert [c.path for c in enterprise.calls] == [
            "/app/installations/9/access_tokens",
            "/repos/corp/app",
            "/repos/corp/app/issues/1/comments",
        ]
    TOKENS.forget()


def test_errors_map_to_stable_codes(stub: GithubStub) -> None:
    token = stub.add_token("acme/shop")
    client = GithubClient(GithubAccess(stub.api_url, "token", token), "acme/shop")
    with pytest.raises(GithubUnauthorized):
        GithubClient(GithubAccess(stub.api_url, "token", "ghp_wrong"), "acme/shop").repository_info()
    with pytest.raises(GithubNotFound):
        GithubClient(client.access, "acme/missing").repository_info()
    stub.fail(403, kind="secondary", retry_after=30)
    with pytest.raises(GithubRateLimited) as secondary:
        client.repository_info()
    assert secondary.value.details["retry_after"] == 30
    assert secondary.value.code == "github_rate_limited"
    stub.fail(403, kind="primary", retry_after=120)
    with pytest.raises(GithubRateLimited) as primary:
        client.repository_info()
    assert 118 <= primary.value.details["retry_after"] <= 121  # from X-RateLimit-Reset
    stub.fail(429, retry_after=7)
    with pytest.raises(GithubRateLimited) as too_many:
        client.repository_info()
    assert too_many.value.details["retry_after"] == 7
    stub.fail(502)
    with pytest.raises(GithubUnavailable):
        client.repository_info()
    with pytest.raises(GithubUnavailable):
        GithubClient(GithubAccess("http://127.0.0.1:9", "token", token), "acme/shop").repository_info()


def test_a_web_request_never_waits_and_a_job_waits_within_its_bound(stub: GithubStub) -> None:
    token = stub.add_token("acme/shop")
    access = GithubAccess(stub.api_url, "token", token)
    stub.fail(429, retry_after=1)
    started = time.monotonic()
    with pytest.raises(GithubRateLimited):
        GithubClient(access, "acme/shop").repository_info()  # max_wait=0: a web request
    assert time.monotonic() - started < 1
    job = GithubClient(access, "acme/shop", max_wait=5)
    stub.fail(403, kind="secondary", retry_after=1)
    started = time.monotonic()
    assert job.repository_info().full_name == "acme/shop"  # waited Retry-After, then succeeded
    assert 0.9 <= time.monotonic() - started < 4
    stub.fail(403, kind="secondary", retry_after=600)
    started = time.monotonic()
    with pytest.raises(GithubRateLimited) as caught:
        job.repository_info()  # would wait longer than allowed: fails at once with the code
    assert time.monotonic() - started < 2
    assert caught.value.details["retry_after"] == 600
    stub.fail(503, times=2)
    assert job.repository_info().full_name == "acme/shop"  # 5xx retried with backoff
