"""Git credentials for an environment's own git, through the real API and the GitHub stub.

The relay in an environment presents the environment's identity; envhub
answers with an App installation token that reaches the project's repository
alone, with ``contents`` and ``pull_requests`` write, and audits the issue
without the token. Other hosts, token connections, forged, expired or
revoked identities are refused with their codes.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest
from sqlmodel import Session, col, select

from envhub.config import Settings
from envhub.domain import git_credentials as rules
from envhub.domain.phases import Phase
from envhub.models import AuditEvent, Environment, GithubConnection, Project
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
