"""Git credentials for an environment's own git, through the real API and the GitHub stub.

The relay in an environment presents the environment's identity; envhub
answers with an App installation token that reaches the project's repository
alone, with ``contents`` and ``pull_requests`` write, and audits the issue
without the token. Other hosts, token connections, forged, expired or
revoked identities are refused with their codes. A Kubernetes workspace's
helper (a sh script) presents its pod's projected token instead, which the
runtime's port reviews; it gets the same token, audited the same way.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session, col, select

from envhub.config import Settings
from envhub.domain import git_credentials as rules
from envhub.domain.kube import git_credentials as kube_git
from envhub.domain.phases import Phase
from envhub.models import AuditEvent, Environment, GithubConnection, Project
from envhub.services import ports
from envhub.services.git_credentials import repository_origin
from envhub.services.github import connect_github
from tests.github.conftest import REPOSITORY
from tests.support.github_stub import GithubStub
from tests.support.world import World
from tests.terminal.harness import make_environment


@pytest.fixture
def environment(session: Session, world: World, project: Project, settings: Settings) -> Environment:
    return make_environment(session, world, project, settings)


def identity_of(settings: Settings, environment: Environment, *, now: float | None = None) -> str:
    key = rules.environment_key(
        settings.derived_key(rules.IDENTITY_KEY_PURPOSE),
        environment.id or 0,
        "acme",
        "shop",
        environment.name,
    )
    return rules.mint_identity(key, environment.id or 0, time.time() if now is None else now)


def ask(app_url: str, identity: str | None, host: str, protocol: str = "http") -> httpx.Response:
    headers = {"Authorization": f"Bearer {identity}"} if identity else {}
    body = {"protocol": protocol, "host": host, "path": f"{REPOSITORY}.git"}
    return httpx.post(f"{app_url}{rules.ENDPOINT}", json=body, headers=headers, timeout=30)


def connect_app(session: Session, world: World, project: Project, stub: GithubStub) -> None:
    private_key = stub.add_app(42)
    stub.install(42, 7, REPOSITORY, "acme/shop")  # the installation reaches two repositories
    connect_github(
        session=session, actor=world.admin, project_id=project.id or 0, repository=REPOSITORY,
        auth="app", api_url=stub.api_url, app_id=42, installation_id=7, private_key=private_key,
    )  # fmt: skip
    session.commit()


def test_an_environment_gets_a_token_for_its_repository_alone_and_the_issue_is_audited(
    app_url: str,
    session: Session,
    world: World,
    project: Project,
    stub: GithubStub,
    settings: Settings,
    environment: Environment,
) -> None:
    connect_app(session, world, project, stub)
    host = stub.origin.removeprefix("http://")
    assert repository_origin(session, project.id or 0) == stub.origin  # what git is configured for

    answer = ask(app_url, identity_of(settings, environment), host)
    assert answer.status_code == 200, answer.text
    given = answer.json()
    assert given["username"] == "x-access-token"
    grant = stub.grants[given["password"]]
    assert grant.installation_id == 7
    assert grant.repositories == {REPOSITORY.lower()}  # not acme/shop, which the App can also reach
    assert grant.permissions == {"contents": "write", "pull_requests": "write"}
    assert grant.expires_at is not None
    assert given["password_expiry_utc"] == int(grant.expires_at.timestamp())

    session.expire_all()
    event = session.exec(select(AuditEvent).where(AuditEvent.action == "environment.git_credentials")).one()
    assert (event.outcome, event.target_id) == ("success", environment.id)
    assert event.details["repository"] == REPOSITORY
    assert event.details["host"] == host
    assert event.details["permissions"] == {"contents": "write", "pull_requests": "write"}
    assert event.details["expires_at"]
    assert given["password"] not in json.dumps([event.details, event.target, event.actor])


def test_other_hosts_token_connections_and_bad_identities_are_refused(
    app_url: str,
    session: Session,
    world: World,
    project: Project,
    stub: GithubStub,
    settings: Settings,
    environment: Environment,
    connection: GithubConnection,  # a token connection
) -> None:
    host = stub.origin.removeprefix("http://")
    good = identity_of(settings, environment)

    def code(answer: httpx.Response) -> tuple[int, str]:
        return answer.status_code, answer.json()["code"]

    assert code(ask(app_url, good, host)) == (409, "github_app_required")
    connect_app(session, world, project, stub)
    minted = len(stub.grants)
    assert code(ask(app_url, good, "github.com", protocol="https")) == (403, "git_host_refused")
    assert code(ask(app_url, good, host, protocol="https")) == (403, "git_host_refused")
    assert code(ask(app_url, None, host)) == (401, "unauthenticated")
    assert code(ask(app_url, identity_of(settings, environment, now=time.time() - 600), host)) == (
        401,
        "unauthenticated",
    )
    forged = good.replace(f"ehe_{environment.id}.", f"ehe_{(environment.id or 0) + 1}.")
    assert code(ask(app_url, forged, host)) == (401, "unauthenticated")
    assert len(stub.grants) == minted  # GitHub was never asked

    environment.phase = Phase.deleted  # deleting the environment revokes its identity
    session.add(environment)
    session.commit()
    assert code(ask(app_url, identity_of(settings, environment), host)) == (401, "unauthenticated")

    session.expire_all()
    failures = session.exec(
        select(AuditEvent.error_code)
        .where(AuditEvent.action == "environment.git_credentials")
        .order_by(col(AuditEvent.id))
    ).all()
    assert failures == ["github_app_required", "git_host_refused", "git_host_refused"]


class Reviewer:
    """The runtime's ``WorkloadTokenReviewer`` port as a cluster answers it: tokens it vouches for."""

    def __init__(self, tokens: dict[str, int]) -> None:
        self.tokens = tokens

    def environment_of_token(self, token: str) -> int | None:
        return self.tokens.get(token)


def workspace_helper(folder: Path, token: str) -> Path:
    """envhub's helper and a pod's token, laid out as the workspace's projected volume holds them."""
    folder.mkdir()
    helper = folder / kube_git.HELPER_NAME
    helper.write_text(kube_git.HELPER_SCRIPT)
    helper.chmod(0o555)
    (folder / kube_git.TOKEN_FILE).write_text(token)
    return helper


def run_helper(helper: Path, url: str, action: str, request: str) -> subprocess.CompletedProcess[str]:
    # As git runs the configured value: through the shell, the action appended.
    return subprocess.run(
        ["sh", "-c", f"{helper} {url} {action}"], input=request, capture_output=True, text=True, timeout=60
    )


def test_a_workspaces_helper_trades_its_pods_token_for_the_repositorys(
    app_url: str,
    session: Session,
    world: World,
    project: Project,
    stub: GithubStub,
    environment: Environment,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    connect_app(session, world, project, stub)
    monkeypatch.setattr(ports, "runtime", lambda: Reviewer({"pod-token": environment.id or 0}))
    helper = workspace_helper(tmp_path / "git", "pod-token")
    url = f"{app_url}{rules.ENDPOINT}"
    host = stub.origin.removeprefix("http://")

    done = run_helper(helper, url, "get", f"protocol=http\nhost={host}\npath={REPOSITORY}.git\n\n")
    assert done.returncode == 0, done.stderr
    answer = dict(line.split("=", 1) for line in done.stdout.splitlines())
    assert set(answer) == {"username", "password", "password_expiry_utc"}
    assert answer["username"] == "x-access-token"
    grant = stub.grants[answer["password"]]
    assert grant.repositories == {REPOSITORY.lower()}
    assert grant.permissions == {"contents": "write", "pull_requests": "write"}
    assert grant.expires_at is not None
    assert int(answer["password_expiry_utc"]) == int(grant.expires_at.timestamp())
    session.expire_all()
    event = session.exec(select(AuditEvent).where(AuditEvent.action == "environment.git_credentials")).one()
    assert (event.outcome, event.target_id, event.details["host"]) == ("success", environment.id, host)

    # Refusals reach git's user on stderr, with envhub's code; git gets nothing to use.
    minted = len(stub.grants)
    other = run_helper(helper, url, "get", "protocol=https\nhost=github.com\n")
    assert (other.returncode, other.stdout) == (1, "")
    assert "git_host_refused" in other.stderr
    stranger = run_helper(
        workspace_helper(tmp_path / "other", "not-vouched-for"), url, "get", f"protocol=http\nhost={host}\n"
    )
    assert (stranger.returncode, stranger.stdout) == (1, "")
    assert "unauthenticated" in stranger.stderr
    assert len(stub.grants) == minted
    # It keeps nothing, and says so when envhub cannot be reached.
    for action in ("store", "erase"):
        kept = run_helper(helper, url, action, f"protocol=http\nhost={host}\npassword=x\n")
        assert (kept.returncode, kept.stdout) == (0, "")
    lost = run_helper(helper, "http://127.0.0.1:9/nowhere", "get", f"protocol=http\nhost={host}\n")
    assert lost.returncode == 1
    assert "cannot reach envhub" in lost.stderr
    # A host git should never send is not passed on.
    odd = run_helper(helper, url, "get", 'protocol=http\nhost=a"b\n')
    assert (odd.returncode, odd.stdout) == (1, "")
    assert "no usable host" in odd.stderr


def test_a_workload_token_is_refused_where_the_runtime_reviews_none(
    app_url: str, session: Session, world: World, project: Project, stub: GithubStub, environment: Environment
) -> None:
    connect_app(session, world, project, stub)  # the local runtime: only ehe_ identities count
    answer = ask(app_url, "pod-token", stub.origin.removeprefix("http://"))
    assert (answer.status_code, answer.json()["code"]) == (401, "unauthenticated")
