"""Tokens for machines: personal access tokens, agent tokens, and the device flow (RFC 8628)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from envhub.config import Settings
from envhub.domain.principals import PrincipalType, Scope
from envhub.errors import NotFound, PermissionDenied, ValidationFailed
from envhub.launcher import login_link
from envhub.models import ApiToken, DeviceAuthorization
from envhub.models.base import utcnow
from envhub.services import device, tokens
from envhub.services.authentication import principal_for_token
from envhub.services.identity import ensure_local_principal
from tests.support.db import audit_events

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@pytest.fixture
def person(local: Settings, envhub_http: str) -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        assert client.get(login_link(local)).status_code == 303
        client.headers["X-CSRF-Token"] = client.get(f"{envhub_http}/api/v1/me").json()["csrf_token"]
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_personal_token_is_shown_once_and_stored_as_a_digest(
    person: httpx.Client, envhub_http: str, db: Engine
) -> None:
    made = person.post(
        f"{envhub_http}/api/v1/tokens",
        json={"name": "ci", "scopes": ["read", "write"], "expires_in_days": 30},
    )
    assert made.status_code == 201
    token = made.json()["token"]
    assert token.startswith("ehp_")
    listed = person.get(f"{envhub_http}/api/v1/tokens").json()
    assert [t["name"] for t in listed] == ["ci"]
    assert "token" not in listed[0]
    assert listed[0]["hint"] == token[:8] + "…"
    with Session(db) as session:
        row = session.exec(select(ApiToken)).one()
        assert token not in repr(row.model_dump())
    me = httpx.get(f"{envhub_http}/api/v1/me", headers=bearer(token)).json()
    assert (me["name"], me["type"], me["scopes"]) == ("local", "token", ["read", "write"])
    assert me["csrf_token"] is None


def test_last_use_is_recorded(person: httpx.Client, envhub_http: str, db: Engine) -> None:
    token = person.post(
        f"{envhub_http}/api/v1/tokens", json={"name": "ci", "scopes": ["read"], "expires_in_days": 1}
    ).json()["token"]
    assert person.get(f"{envhub_http}/api/v1/tokens").json()[0]["last_used_at"] is None
    httpx.get(f"{envhub_http}/api/v1/me", headers=bearer(token))
    [listed] = person.get(f"{envhub_http}/api/v1/tokens").json()
    assert listed["last_used_at"] is not None
    with Session(db) as session:
        assert session.exec(select(ApiToken)).one().last_used_ip == "127.0.0.1"


def test_revoked_and_expired_tokens_stop_working(person: httpx.Client, envhub_http: str, db: Engine) -> None:
    body = {"name": "a", "scopes": ["read"], "expires_in_days": 1}
    first = person.post(f"{envhub_http}/api/v1/tokens", json=body).json()
    second = person.post(f"{envhub_http}/api/v1/tokens", json={**body, "name": "b"}).json()
    assert person.delete(f"{envhub_http}/api/v1/tokens/{first['id']}").json()["revoked_at"] is not None
    assert httpx.get(f"{envhub_http}/api/v1/me", headers=bearer(first["token"])).status_code == 401
    with Session(db) as session:
        session.exec(
            update(ApiToken)
            .where(ApiToken.id == second["id"])
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )  # type: ignore[call-overload]
        session.commit()
    assert httpx.get(f"{envhub_http}/api/v1/me", headers=bearer(second["token"])).status_code == 401
    assert [e.outcome for e in audit_events(db, "token.revoke")] == ["success"]


def test_a_token_can_revoke_itself_but_no_other(person: httpx.Client, envhub_http: str) -> None:
    body = {"name": "a", "scopes": ["read"], "expires_in_days": 1}
    first = person.post(f"{envhub_http}/api/v1/tokens", json=body).json()
    second = person.post(f"{envhub_http}/api/v1/tokens", json={**body, "name": "b"}).json()
    other = httpx.delete(f"{envhub_http}/api/v1/tokens/{second['id']}", headers=bearer(first["token"]))
    assert other.status_code == 403
    itself = httpx.delete(f"{envhub_http}/api/v1/tokens/{first['id']}", headers=bearer(first["token"]))
    assert itself.status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "scopes": ["root"], "expires_in_days": 1}, "scopes"),
        ({"name": "x", "scopes": [], "expires_in_days": 1}, "scopes"),
        ({"name": "", "scopes": ["read"], "expires_in_days": 1}, "name"),
        ({"name": "x", "scopes": ["read"], "expires_in_days": 0}, "expires_in_days"),
        ({"name": "x", "scopes": ["read"], "expires_in_days": 366}, "expires_in_days"),
        ({"name": "x\u0000y", "scopes": ["read"], "expires_in_days": 1}, "name"),
    ],
)
def test_bad_token_requests_are_422(
    person: httpx.Client, envhub_http: str, body: dict[str, object], field: str
) -> None:
    response = person.post(f"{envhub_http}/api/v1/tokens", json=body)
    assert response.status_code == 422
    assert response.json()["code"] == "validation_failed"
    assert field in response.text


def test_an_agent_token_is_confined_to_its_environment(local: Settings, session: Session, db: Engine) -> None:
    from tests.identity.worlds import environment_in

    me = ensure_local_principal(session)
    mine = environment_in(session, team_name="default", project="shop", name="pr-1")
    other = environment_in(session, team_name="default", project="shop", name="pr-2")
    new = tokens.create_agent_token(
        session=session,
        actor=me,
        environment_id=mine,
        name="agent",
        scopes=["read", "shell"],
        expires_in_days=7,
    )
    assert new.token.startswith("eha_")
    agent = principal_for_token(session, new.token)
    assert agent is not None
    assert (agent.type, agent.environment_id, agent.scopes) == (
        PrincipalType.agent,
        mine,
        frozenset({Scope.read, Scope.shell}),
    )
    from envhub.services.environments import get_environment
    from envhub.services.projects import list_projects

    assert get_environment(session=session, actor=agent, environment_id=mine).id == mine
    with pytest.raises(NotFound):
        get_environment(session=session, actor=agent, environment_id=other)
    assert list_projects(session=session, actor=agent).items == []
    with pytest.raises(PermissionDenied, match="tokens cannot create tokens"):
        tokens.create_personal_token(
            session=session, actor=agent, name="x", scopes=["read"], expires_in_days=1
        )


def test_tokens_are_made_by_people_only(local: Settings, session: Session) -> None:
    me = ensure_local_principal(session)
    new = tokens.create_personal_token(
        session=session, actor=me, name="t", scopes=["admin", "read"], expires_in_days=1
    )
    pat = principal_for_token(session, new.token)
    assert pat is not None
    with pytest.raises(PermissionDenied):
        tokens.create_personal_token(
            session=session, actor=pat, name="t2", scopes=["read"], expires_in_days=1
        )
    with pytest.raises(ValidationFailed):
        tokens.create_personal_token(
            session=session, actor=me, name="t3", scopes=["read"], expires_in_days=10_000
        )


# -- the device flow --------------------------------------------------------------


def start_device(base: str, scope: str = "read shell") -> dict[str, object]:
    response = httpx.post(f"{base}/auth/device/code", data={"client_id": "envhub-cli", "scope": scope})
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, object] = response.json()
    return body


def poll(base: str, device_code: object) -> httpx.Response:
    return httpx.post(
        f"{base}/auth/device/token",
        data={"grant_type": DEVICE_GRANT, "device_code": device_code, "client_id": "envhub-cli"},
    )


def test_the_device_flow_issues_a_token_after_a_person_confirms(
    local: Settings, envhub_http: str, session: Session, db: Engine
) -> None:
    started = start_device(envhub_http)
    assert started["verification_uri"] == f"{envhub_http}/device"
    assert str(started["verification_uri_complete"]).endswith(f"?code={started['user_code']}")
    assert (started["interval"], started["expires_in"]) == (5, 600)
    pending = poll(envhub_http, started["device_code"])
    assert (pending.status_code, pending.json()["error"]) == (400, "authorization_pending")
    fast = poll(envhub_http, started["device_code"])
    assert fast.json()["error"] == "slow_down"  # polled again within the interval
    person = ensure_local_principal(session)
    device.approve(session, actor=person, user_code=str(started["user_code"]).lower().replace("-", ""))
    with Session(db) as fresh:
        fresh.exec(update(DeviceAuthorization).values(last_polled_at=utcnow() - timedelta(seconds=10)))  # type: ignore[call-overload]
        fresh.commit()
    granted = poll(envhub_http, started["device_code"])
    assert granted.status_code == 200, granted.text
    body = granted.json()
    assert (body["token_type"], body["scope"]) == ("Bearer", "read shell")
    me = httpx.get(f"{envhub_http}/api/v1/me", headers=bearer(body["access_token"])).json()
    assert (me["name"], me["scopes"]) == ("local", ["read", "shell"])
    with Session(db) as fresh:
        fresh.exec(update(DeviceAuthorization).values(last_polled_at=utcnow() - timedelta(seconds=10)))  # type: ignore[call-overload]
        fresh.commit()
    again = poll(envhub_http, started["device_code"])
    assert again.json()["error"] == "invalid_grant"  # handed out exactly once
    [made] = audit_events(db, "token.create")
    assert made.details["via"] == "device"


def test_a_denied_or_expired_device_code_gets_nothing(
    local: Settings, envhub_http: str, session: Session, db: Engine
) -> None:
    denied, expired = start_device(envhub_http), start_device(envhub_http)
    device.deny(session, actor=ensure_local_principal(session), user_code=str(denied["user_code"]))
    assert poll(envhub_http, denied["device_code"]).json()["error"] == "access_denied"
    with Session(db) as fresh:
        fresh.exec(
            update(DeviceAuthorization)
            .where(DeviceAuthorization.user_code == expired["user_code"])
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )  # type: ignore[call-overload]
        fresh.commit()
    assert poll(envhub_http, expired["device_code"]).json()["error"] == "expired_token"
    with pytest.raises(NotFound):
        device.approve(session, actor=ensure_local_principal(session), user_code=str(expired["user_code"]))


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"client_id": "evil-cli", "scope": "read"}, "validation_failed"),
        ({"client_id": "envhub-cli", "scope": "root"}, "validation_failed"),
    ],
)
def test_bad_device_requests_are_refused(
    local: Settings, envhub_http: str, data: dict[str, str], error: str
) -> None:
    response = httpx.post(f"{envhub_http}/auth/device/code", data=data)
    assert response.status_code == 422
    assert response.json()["code"] == error


def test_the_device_token_endpoint_speaks_rfc_8628(local: Settings, envhub_http: str) -> None:
    wrong_grant = httpx.post(f"{envhub_http}/auth/device/token", data={"grant_type": "password"})
    assert (wrong_grant.status_code, wrong_grant.json()["error"]) == (400, "unsupported_grant_type")
    unknown = poll(envhub_http, "ehd_made-up")
    assert (unknown.status_code, unknown.json()["error"], unknown.json()["code"]) == (
        400,
        "invalid_grant",
        "device_invalid_grant",
    )
    not_form = httpx.post(f"{envhub_http}/auth/device/token", json={"grant_type": DEVICE_GRANT})
    assert not_form.status_code == 422
