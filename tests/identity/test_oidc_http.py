"""Sign-in with OpenID Connect at the HTTP level, against a real provider.

envhub's app (every middleware) is served over real HTTP; the provider is npm
oidc-provider. httpx plays the browser: it follows the redirects, posts the
provider's login form and carries the cookies.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from envhub.config import Settings
from envhub.models import AuditEvent, Membership, Team, User, WebSession
from tests.identity.flows import login_at_provider, query_of, sign_in, start_login
from tests.identity.oidc_provider import TestProvider
from tests.support.db import audit_events


@pytest.fixture
def browser() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=20) as client:
        yield client


def cookie(response: httpx.Response, name: str) -> str:
    for header in response.headers.get_list("set-cookie"):
        if header.startswith(f"{name}="):
            return header
    raise AssertionError(f"no {name} cookie in {response.headers.get_list('set-cookie')}")


def test_sign_in_succeeds_and_sets_a_safe_session_cookie(
    oidc: Settings, envhub_http: str, op: TestProvider, browser: httpx.Client, db: Engine
) -> None:
    response = sign_in(browser, envhub_http, op, "alice@acme.example", next_path="/projects/7")
    assert response.status_code == 303
    assert response.headers["location"] == "/projects/7"
    header = cookie(response, "envhub_session").lower()
    assert "httponly" in header
    assert "samesite=lax" in header
    assert "secure" not in header  # http://localhost: a Secure cookie would never come back
    me = browser.get(f"{envhub_http}/api/v1/me").json()
    assert me["name"] == "alice"
    assert me["type"] == "user"
    with Session(db) as session:
        user = session.exec(select(User).where(User.username == "alice")).one()
        assert user.email == "alice@acme.example"
        assert user.oidc_issuer == op.issuer
    [event] = audit_events(db, "auth.sign_in")
    assert (event.outcome, event.actor, event.source_ip) == ("success", "alice", "127.0.0.1")
    assert event.user_agent
    assert "python-httpx" in event.user_agent


def test_the_first_person_owns_the_first_team(
    oidc: Settings, envhub_http: str, op: TestProvider, db: Engine
) -> None:
    for email in ("alice@acme.example", "bob@acme.example"):
        with httpx.Client(timeout=20) as client:
            assert sign_in(client, envhub_http, op, email).status_code == 303
    with Session(db) as session:
        team = session.exec(select(Team).where(Team.name == "default")).one()
        roles = {
            session.get(User, m.user_id).username: m.role.value  # type: ignore[union-attr]
            for m in session.exec(select(Membership).where(Membership.team_id == team.id))
        }
    assert roles == {"alice": "owner"}


def test_a_wrong_state_is_refused(
    oidc: Settings, envhub_http: str, op: TestProvider, browser: httpx.Client, db: Engine
) -> None:
    callback = login_at_provider(browser, op, start_login(browser, envhub_http), "alice@acme.example")
    forged = callback.replace(f"state={query_of(callback)['state']}", "state=forged-state")
    response = browser.get(forged, headers={"Accept": "application/json"})
    assert response.status_code == 400
    assert response.json()["code"] == "oidc_state_mismatch"
    assert browser.get(f"{envhub_http}/api/v1/me").status_code == 401
    [event] = audit_events(db, "auth.sign_in")
    assert (event.outcome, event.error_code) == ("failure", "oidc_state_mismatch")


def test_a_callback_without_the_login_cookie_is_refused(
    oidc: Settings, envhub_http: str, op: TestProvider, browser: httpx.Client
) -> None:
    """Login CSRF: a code for someone else's attempt, delivered to this browser."""
    callback = login_at_provider(browser, op, start_login(browser, envhub_http), "mallory@evil.example")
    with httpx.Client(timeout=20) as victim:
        response = victim.get(callback, headers={"Accept": "text/html"})
    assert response.status_code == 400
    assert 'id="error-code">oidc_state_mismatch<' in response.text


@pytest.mark.parametrize(
    ("tamper", "code"),
    [
        ("nonce", "oidc_nonce_mismatch"),
        ("expired", "oidc_token_expired"),
        ("issuer", "oidc_token_invalid"),
        ("audience", "oidc_token_invalid"),
        ("signature", "oidc_token_invalid"),
    ],
)
def test_a_bad_id_token_is_refused(
    oidc: Settings,
    envhub_http: str,
    op: TestProvider,
    browser: httpx.Client,
    db: Engine,
    tamper: str,
    code: str,
) -> None:
    callback = login_at_provider(browser, op, start_login(browser, envhub_http), "alice@acme.example")
    op.control(tamper=tamper)  # the provider signs the next ID token with this one thing wrong
    response = browser.get(callback, headers={"Accept": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["code"] == code
    assert browser.get(f"{envhub_http}/api/v1/me").status_code == 401
    with Session(db) as session:
        assert session.exec(select(User)).all() == []
        assert session.exec(select(WebSession)).all() == []
    [event] = audit_events(db, "auth.sign_in")
    assert (event.outcome, event.error_code) == ("failure", code)


@pytest.mark.parametrize("email", ["mallory@evil.example", "unverified@acme.example"])
def test_people_outside_the_allowed_domains_and_groups_are_refused(
    oidc: Settings, envhub_http: str, op: TestProvider, browser: httpx.Client, db: Engine, email: str
) -> None:
    response = sign_in(browser, envhub_http, op, email)
    assert response.status_code == 403
    assert response.json()["code"] == "sign_in_not_allowed"
    assert browser.get(f"{envhub_http}/api/v1/me").status_code == 401
    with Session(db) as session:
        assert session.exec(select(User)).all() == []
    [event] = audit_events(db, "auth.sign_in")
    assert (event.outcome, event.error_code, event.actor) == ("failure", "sign_in_not_allowed", email)


def test_an_allowed_group_lets_another_domain_in(
    oidc: Settings, envhub_http: str, op: TestProvider, browser: httpx.Client
) -> None:
    assert sign_in(browser, envhub_http, op, "carol@partner.example").status_code == 303
    assert browser.get(f"{envhub_http}/api/v1/me").json()["name"] == "carol"


def test_sign_in_rotates_the_session(
    oidc: Settings, envhub_http: str, op: TestProvider, browser: httpx.Client, db: Engine
) -> None:
    first = sign_in(browser, envhub_http, op, "alice@acme.example")
    old = first.cookies["envhub_session"]
    second = sign_in(browser, envhub_http, op, "alice@acme.example")
    new = second.cookies["envhub_session"]
    assert new != old
    with httpx.Client(timeout=20, cookies={"envhub_session": old}) as stale:
        assert stale.get(f"{envhub_http}/api/v1/me").status_code == 401
    with Session(db) as session:
        rows = session.exec(select(WebSession).order_by(WebSession.id)).all()  # type: ignore[arg-type]
        assert [row.revoked_at is not None for row in rows] == [True, False]


def test_audit_rows_of_sign_in_carry_no_secrets(
    oidc: Settings, envhub_http: str, op: TestProvider, browser: httpx.Client, db: Engine
) -> None:
    response = sign_in(browser, envhub_http, op, "alice@acme.example")
    token = response.cookies["envhub_session"]
    with Session(db) as session:
        dumped = repr([e.model_dump() for e in session.exec(select(AuditEvent)).all()])
        stored = repr([s.model_dump() for s in session.exec(select(WebSession)).all()])
    assert token not in dumped
    assert token not in stored
