"""Signing in for terminal tests the way people and programs do, with no stand-in.

* :func:`browser_cookie`: the local sign-in flow. The one-time link the
  launcher prints is opened over HTTP; what comes back is the session cookie a
  browser keeps.
* :func:`personal_token`: a personal access token made through the tokens use
  case for that person (the Tokens page does the same), sent as a bearer
  token, as the CLI sends it.
* :func:`agent_token`: an agent token, confined to one environment.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

import httpx
from sqlmodel import Session

from envhub.config import Settings
from envhub.domain.principals import Principal
from envhub.launcher import login_link
from envhub.services import tokens


@dataclass(frozen=True)
class Credential:
    name: str  # whose: the username the server will see
    headers: dict[str, str] = field(default_factory=dict)
    token_id: int | None = None


ANONYMOUS = Credential("anonymous")


def browser_cookie(base_url: str, settings: Settings) -> Credential:
    """Sign in as the local user through a login link; the browser's cookie."""
    token = login_link(settings).rsplit("/", 1)[1]
    with httpx.Client(base_url=base_url, timeout=30) as browser:
        response = browser.get(f"/auth/local/{token}")
        assert response.status_code == 303, response.text
        cookie = "; ".join(f"{name}={value}" for name, value in browser.cookies.items())
    assert cookie, "the sign-in set no cookie"
    return Credential("local", {"Cookie": cookie})


def personal_token(
    session: Session, person: Principal, scopes: tuple[str, ...] = ("read", "shell")
) -> Credential:
    new = tokens.create_personal_token(
        session=session,
        actor=person,
        name=f"tests-{secrets.token_hex(3)}",
        scopes=list(scopes),
        expires_in_days=1,
    )
    return Credential(person.name, {"Authorization": f"Bearer {new.token}"}, new.row.id)


def agent_token(
    session: Session, person: Principal, environment_id: int, scopes: tuple[str, ...] = ("read", "shell")
) -> Credential:
    new = tokens.create_agent_token(
        session=session,
        actor=person,
        environment_id=environment_id,
        name=f"agent-{secrets.token_hex(3)}",
        scopes=list(scopes),
        expires_in_days=1,
    )
    return Credential(person.name, {"Authorization": f"Bearer {new.token}"}, new.row.id)
