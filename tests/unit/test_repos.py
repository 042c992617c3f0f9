"""Repository URLs: remote only, no credentials, local paths only where the operator allows them."""

from __future__ import annotations

import pytest

from envhub.domain.repos import RepoKind, repo_source, require_allowed
from envhub.domain.specs import parse_spec
from envhub.errors import RepoUrlRefused, ValidationFailed


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/acme/shop.git",
        "https://git.example.com:8443/group/sub/shop",
        "https://[::1]:8443/shop.git",
        "ssh://git@github.com/acme/shop.git",
        "ssh://deploy@git.example.com:2222/srv/shop.git",
        "ssh://git.example.com/shop.git",
        "git@github.com:acme/shop.git",
        "github.com:acme/shop.git",
    ],
)
def test_remote_urls_are_accepted(url: str) -> None:
    assert repo_source(url).kind is RepoKind.remote
    assert require_allowed(url, allow_local=False) == repo_source(url)
    assert parse_spec({"repo_url": f"  {url} "}).repo_url == url


@pytest.mark.parametrize(
    "url", ["/srv/git/shop.git", "file:///srv/git/shop.git", "file://localhost/srv/shop"]
)
def test_local_paths_need_the_operator_setting(url: str) -> None:
    assert repo_source(url).kind is RepoKind.local
    assert parse_spec({"repo_url": url}).repo_url == url  # a spec may name one; using it is the policy's call
    assert require_allowed(url, allow_local=True) == repo_source(url)
    with pytest.raises(RepoUrlRefused) as caught:
        require_allowed(url, allow_local=False)
    assert caught.value.code == "repo_url_refused"
    assert caught.value.details == {
        "repo_url": "local paths and file:// URLs are turned off on this envhub",
        "reason": "local_not_allowed",
    }
    assert "ENVHUB_ALLOW_LOCAL_REPOS" in caught.value.hint


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("https://alice:hunter2@github.com/acme/shop.git", "hunter2"),
        ("https://ghp_abcdef0123456789@github.com/acme/shop.git", "ghp_abcdef0123456789"),
        ("https://x-access-token:ghs_tok@github.com/acme/shop.git", "ghs_tok"),
        ("https://oauth2@gitlab.example.com/acme/shop.git", "oauth2"),
        ("https://gitlab.example.com/acme/shop.git?private_token=glpat-123", "glpat-123"),
        ("ssh://git:hunter2@github.com/acme/shop.git", "hunter2"),
        ("git:hunter2@github.com:acme/shop.git", "hunter2"),
    ],
)
def test_credentials_in_a_url_are_refused_without_repeating_them(url: str, secret: str) -> None:
    with pytest.raises(RepoUrlRefused) as caught:
        parse_spec({"repo_url": url})
    error = caught.value
    assert error.code == "repo_url_refused"
    assert error.details["reason"] == "credentials"
    assert error.details["repo_url"] == "credentials are not allowed in a repository URL"
    assert "GIT_TOKEN" in error.hint
    assert secret not in repr(error.to_dict())
    assert error.__cause__ is None
    assert error.__context__ is None  # nothing chained that quotes the input


@pytest.mark.parametrize(
    "url",
    [
        "http://github.com/acme/shop.git",
        "git://github.com/acme/shop.git",
        "ftp://example.com/shop.git",
        "ext::sh -c touch% /tmp/pwned",
        "ext::sh",
        "fd::17",
        "--upload-pack=touch /tmp/pwned",
        "-oProxyCommand=x@host:repo",
        "ssh://-oProxyCommand=touch%20x/repo",
        "https://-host/repo",
        "git@host:-repo",
        "relative/path",
        "./shop",
        "../shop",
        "file://otherhost/srv/shop",
        "https://github.com",
        "https://github.com/",
        "https://github.com:notaport/acme/shop",
        "https://github.com/acme/shop#frag",
        "https://github.com/acme/shop\n.git",
        "https://github.com/acme/sh op",
        "https://github.com/acme/\x00shop",
        "shop",
    ],
)
def test_everything_else_is_refused(url: str) -> None:
    with pytest.raises(RepoUrlRefused) as caught:
        repo_source(url)
    assert caught.value.details["reason"] == "unsupported"
    assert caught.value.details["repo_url"] == "must be an https://, ssh:// or git@host:path URL"
    assert caught.value.hint


def test_a_refused_url_and_other_problems_are_reported_together() -> None:
    with pytest.raises(RepoUrlRefused) as caught:
        parse_spec({"repo_url": "ftp://x", "ref": "..", "health_path": "x"})
    assert isinstance(caught.value, ValidationFailed)  # every face shows it as a field error
    assert set(caught.value.details) == {"repo_url", "ref", "health_path", "reason"}
    assert caught.value.message.startswith("invalid environment spec: repo_url: must be an https://")


def test_no_repository_is_fine() -> None:
    assert parse_spec({"repo_url": "  "}).repo_url is None
    assert require_allowed(None, allow_local=False) is None
