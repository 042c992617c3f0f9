"""services/github.py: validation, verification by GitHub (the stub), sealing, the secret once, audit."""

from __future__ import annotations

import json

import pytest
from sqlmodel import Session, select

from envhub.errors import (
    GithubConnectionInvalid,
    GithubNotConnected,
    GithubNotFound,
    GithubRateLimited,
    GithubUnauthorized,
    PermissionDenied,
)
from envhub.models import AuditEvent, GithubConnection, Project
from envhub.services import github
from envhub.services.github import client_for, webhook_secrets
from tests.support.github_stub import GithubStub, generate_private_key
from tests.support.world import World


def connect_token(session: Session, world: World, project: Project, stub: GithubStub, **extra: object):
    fields: dict[str, object] = {
        "repository": "acme/shop",
        "auth": "token",
        "api_url": stub.api_url,
        "token": stub.add_token("acme/shop"),
    }
    fields.update(extra)
    return github.connect_github(session=session, actor=world.admin, project_id=project.id or 0, **fields)  # type: ignore[arg-type]


def audit_text(session: Session) -> str:
    events = session.exec(select(AuditEvent).where(AuditEvent.action.startswith("github."))).all()  # type: ignore[union-attr]
    return json.dumps([[e.action, e.outcome, e.error_code, e.details, e.target] for e in events])


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"repository": "shop"}, "repository"),
        ({"repository": "https://x:ghp_secret@github.com/acme/shop"}, "repository"),
        ({"repository": "acme/../x"}, "repository"),
        ({"api_url": "http://github.example/api/v3"}, "api_url"),
        ({"api_url": "https://user:pass@github.example/api/v3"}, "api_url"),
        ({"api_url": "https://github.com"}, "api_url"),
        ({"api_url": "ftp://github.example"}, "api_url"),
        ({"token": ""}, "token"),
        ({"token": "two words"}, "token"),
        ({"auth": "password"}, "auth"),
        ({"auth": "app", "app_id": 0, "installation_id": 1, "private_key": "x"}, "app_id"),
        ({"auth": "app", "app_id": 1, "installation_id": None, "private_key": "x"}, "installation_id"),
        ({"auth": "app", "app_id": 1, "installation_id": 2, "private_key": "not a key"}, "private_key"),
    ],
)
def test_inputs_are_refused_with_a_code_and_the_field_before_github_is_asked(
    session: Session, world: World, project: Project, stub: GithubStub, fields: dict[str, object], field: str
) -> None:
    with pytest.raises(GithubConnectionInvalid) as caught:
        connect_token(session, world, project, stub, **fields)
    assert caught.value.code == "github_connection_invalid"
    assert caught.value.details["field"] == field
    assert "ghp_secret" not in caught.value.message
    assert "pass" not in caught.value.message
    assert stub.count() == 0
    assert session.exec(select(GithubConnection)).first() is None


def test_connect_with_a_token_seals_it_and_shows_the_secret_once(
    session: Session, world: World, project: Project, stub: GithubStub
) -> None:
    connected = connect_token(session, world, project, stub)
    token = next(iter(stub.grants))
    secret = connected["webhook_secret"]
    assert len(secret) >= 40
    assert connected["webhook_url"].endswith("/webhooks/github")
    assert connected["events"] == ["pull_request", "push"]
    assert (connected["default_branch"], connected["private"]) == ("main", True)
    view = connected["connection"]
    assert (view["repository"], view["auth"], view["verified"]) == (
        "acme/shop",
        "token",
        "0 seconds ago",
    ) or view["verified_at"]
    row = session.exec(select(GithubConnection)).one()
    assert token not in row.credential
    assert secret not in row.webhook_secret
    assert row.credential.startswith("v1.")
    assert row.webhook_secret.startswith("v1.")
    # Never again: not in the view, nor in the audit trail.
    shown = github.github_connection(session=session, actor=world.viewer, project_id=project.id or 0)
    assert secret not in json.dumps(shown)
    assert token not in json.dumps(shown)
    trail = audit_text(session)
    assert "github.connect" in trail
    assert secret not in trail
    assert token not in trail
    # The webhook endpoint and the jobs open them.
    assert webhook_secrets(session, "ACME/shop") == [(row.id, secret)]
    assert client_for(row).installation_token().token == token


def test_reconnecting_the_same_repository_keeps_the_secret_another_gets_a_new_one(
    session: Session, world: World, project: Project, stub: GithubStub
) -> None:
    first = connect_token(session, world, project, stub)["webhook_secret"]
    again = connect_token(session, world, project, stub)
    assert again["webhook_secret"] == ""
    assert webhook_secrets(session, "acme/shop")[0][1] == first
    stub.add_repo("acme/web")
    moved = connect_token(
        session, world, project, stub, repository="acme/web", token=stub.add_token("acme/web")
    )
    assert moved["webhook_secret"] not in ("", first)
    assert webhook_secrets(session, "acme/shop") == []


def test_connect_as_an_app_installation(
    session: Session, world: World, project: Project, stub: GithubStub
) -> None:
    key = stub.add_app(42)
    stub.install(42, 7, "acme/shop")
    connected = connect_token(
        session, world, project, stub, auth="app", app_id=42, installation_id=7, private_key=key, token=""
    )
    assert (connected["connection"]["app_id"], connected["connection"]["installation_id"]) == (42, 7)
    row = session.exec(select(GithubConnection)).one()
    assert "PRIVATE KEY" not in row.credential
    assert "PRIVATE KEY" not in audit_text(session)
    assert stub.count("POST", "/app/installations/7/access_tokens") == 1


def test_a_failed_verification_refuses_the_connect_with_githubs_code(
    session: Session, world: World, project: Project, stub: GithubStub
) -> None:
    with pytest.raises(GithubUnauthorized):
        connect_token(session, world, project, stub, token="ghp_nobody")
    with pytest.raises(GithubNotFound):
        connect_token(session, world, project, stub, repository="acme/missing")
    stub.add_app(42)
    stub.install(42, 7, "acme/shop")
    with pytest.raises(GithubUnauthorized):  # a valid key, but another App's
        connect_token(
            session, world, project, stub, auth="app", app_id=42, installation_id=7,
            private_key=generate_private_key(),
        )  # fmt: skip
    stub.fail(403, kind="secondary", retry_after=45)
    with pytest.raises(GithubRateLimited) as limited:
        connect_token(session, world, project, stub)
    assert limited.value.details["retry_after"] == 45
    assert session.exec(select(GithubConnection)).first() is None
    trail = audit_text(session)
    assert trail.count('"failure"') == 4
    assert "ghp_nobody" not in trail


def test_policy_rotation_and_disconnect(
    session: Session, world: World, project: Project, stub: GithubStub
) -> None:
    pid = project.id or 0
    with pytest.raises(GithubNotConnected):
        github.github_connection(session=session, actor=world.owner, project_id=pid)
    first = connect_token(session, world, project, stub)["webhook_secret"]
    view = github.update_github_policy(
        session=session,
        actor=world.admin,
        project_id=pid,
        changes={"drafts": True, "opt_in_label": "preview", "push_branches": ["main", "release/*", "main"]},
    )
    assert (view["drafts"], view["opt_in_label"], view["push_branches"]) == (
        True,
        "preview",
        ["main", "release/*"],
    )
    for bad in ({"push_branches": ["has space"]}, {"opt_out_label": "preview"}, {"colour": "red"},
                {"drafts": "yes"}, {"opt_in_label": "x" * 51}):  # fmt: skip
        with pytest.raises(GithubConnectionInvalid):
            github.update_github_policy(session=session, actor=world.admin, project_id=pid, changes=bad)
    cleared = github.update_github_policy(
        session=session, actor=world.admin, project_id=pid, changes={"opt_in_label": "", "push_branches": []}
    )
    assert (cleared["opt_in_label"], cleared["push_branches"]) == ("", [])
    rotated = github.rotate_webhook_secret(session=session, actor=world.admin, project_id=pid)
    assert rotated["webhook_secret"] not in ("", first)
    assert webhook_secrets(session, "acme/shop")[0][1] == rotated["webhook_secret"]
    assert rotated["webhook_secret"] not in audit_text(session)
    with pytest.raises(PermissionDenied):
        github.disconnect_github(session=session, actor=world.member, project_id=pid)
    assert github.disconnect_github(session=session, actor=world.admin, project_id=pid)["disconnected"]
    assert session.exec(select(GithubConnection)).first() is None
    with pytest.raises(GithubNotConnected):
        github.rotate_webhook_secret(session=session, actor=world.admin, project_id=pid)
