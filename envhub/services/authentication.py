"""Who is calling: a browser session, a personal access token or an agent token.

The API (``api/auth.py``) and the dashboard (``ui/state.py``) both hand the
request's Cookie and Authorization headers to :func:`authenticate`, so there
is one decision for every interface. A session signed in with OpenID Connect
is re-checked with the provider every ``ENVHUB_OIDC_RECHECK_INTERVAL``
seconds (refresh grant): someone removed there stops being let in here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from http.cookies import CookieError, SimpleCookie

from sqlmodel import Session, col, select, update

from envhub.domain import credentials
from envhub.domain.credentials import SecretKind
from envhub.domain.phases import Phase
from envhub.domain.principals import AGENT_SCOPES, Principal, PrincipalType, Scope
from envhub.errors import EnvhubError, SecretUnreadable
from envhub.models import ApiToken, Environment, User, WebSession
from envhub.models.base import utcnow
from envhub.services import sessions

log = logging.getLogger(__name__)

_TOKEN_TOUCH_EVERY = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class Caller:
    principal: Principal
    via: str  # session | token
    session_hash: str | None = None  # for sessions: the digest naming it (CSRF tokens derive from it)


def cookie_value(cookie_header: str | None, name: str) -> str | None:
    if not cookie_header:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(cookie_header)
    except CookieError:
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None and morsel.value else None


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def authenticate(
    session: Session,
    *,
    cookie_header: str | None,
    authorization: str | None,
    source_ip: str | None = None,
    user_agent: str | None = None,
) -> Caller | None:
    """The caller behind these headers, or None if anonymous or not valid any more.

    A bearer token wins over a cookie: a program that sends one means it.
    """
    token = bearer_token(authorization)
    if token is not None:
        principal = principal_for_token(session, token, source_ip=source_ip)
        if principal is None:
            return None
        return Caller(principal.with_origin(source_ip, user_agent), via="token")
    cookie = cookie_value(cookie_header, sessions.session_cookie_name())
    if cookie is None:
        return None
    digest = credentials.digest(cookie)
    principal = principal_for_session(session, digest)
    if principal is None:
        return None
    return Caller(principal.with_origin(source_ip, user_agent), via="session", session_hash=digest)


def principal_for_session(session: Session, token_hash: str, *, touch: bool = True) -> Principal | None:
    """The person of a live session; ``touch`` records activity (it keeps the session from idling)."""
    row = sessions.live_session(session, token_hash)
    if row is None:
        return None
    if row.method == "oidc" and row.recheck_at is not None and row.recheck_at <= utcnow():
        row = _recheck(session, token_hash)
        if row is None:
            return None
    user = session.get(User, row.user_id)
    if user is None:
        return None
    if touch:
        sessions.touch(session, row)
    return Principal(name=user.username, type=PrincipalType.user, user_id=user.id)


def _recheck(session: Session, token_hash: str) -> WebSession | None:
    """Ask the provider whether the person may still be here (one request at a time)."""
    from envhub.services import signin  # signin builds sessions; the import goes one way at module level

    row = sessions.live_session(session, token_hash, lock=True)
    if row is None or row.recheck_at is None or row.recheck_at > utcnow():
        session.commit()
        return row  # another request re-checked it meanwhile
    user = session.get(User, row.user_id)
    try:
        if user is None or not row.oidc_refresh_token:
            raise SecretUnreadable("the session has no refresh token")
        signin.recheck_session(session, row, user)
    except EnvhubError as exc:
        if exc.retryable:
            # The provider is down: keep the person in, ask again in a minute.
            row.recheck_at = utcnow() + timedelta(seconds=60)
            session.add(row)
            session.commit()
            return row
        log.info("session of %s ended by the provider re-check: %s", user.username if user else "?", exc.code)
        sessions.revoke(session, row=row)
        session.commit()
        return None
    session.commit()
    return row


def _token_usable(session: Session, row: ApiToken) -> bool:
    """Not revoked, not expired, and for an agent token, its environment still there."""
    if row.revoked_at is not None or row.expires_at <= utcnow():
        return False
    if row.kind == "agent":
        environment = session.get(Environment, row.environment_id) if row.environment_id else None
        if environment is None or environment.phase is Phase.deleted:
            return False  # its environment is gone: the token goes with it
    return True


def still_signed_in(session: Session, caller: Caller, *, active: bool = False) -> bool:
    """Whether the credential ``caller`` signed in with still holds (for long-lived connections).

    A session must not have been signed out, revoked, expired or gone idle (an
    OpenID session is re-checked with the provider when due); ``active`` counts
    as activity that keeps it from idling. A token must not be revoked or
    expired, and an agent token's environment must still exist. Roles and
    shares are not looked at here: that is the use case's authorization.
    """
    if caller.via == "session":
        return caller.session_hash is not None and (
            principal_for_session(session, caller.session_hash, touch=active) is not None
        )
    token_id = caller.principal.token_id
    row = session.get(ApiToken, token_id) if token_id is not None else None
    if row is None or row.user_id != caller.principal.user_id:
        return False
    return _token_usable(session, row)


def principal_for_token(session: Session, token: str, *, source_ip: str | None = None) -> Principal | None:
    kind = credentials.kind_of(token)
    if kind not in (SecretKind.personal_token, SecretKind.agent_token):
        return None
    row = session.exec(select(ApiToken).where(ApiToken.token_hash == credentials.digest(token))).first()
    now = utcnow()
    if row is None or (row.kind == "agent") != (kind is SecretKind.agent_token):
        return None
    user = session.get(User, row.user_id)
    if user is None or not _token_usable(session, row):
        return None
    if row.last_used_at is None or now - row.last_used_at >= _TOKEN_TOUCH_EVERY:
        session.exec(
            update(ApiToken)
            .where(col(ApiToken.id) == row.id)
            .values(last_used_at=now, last_used_ip=(source_ip or "")[:64])
        )
        session.commit()
    scopes = frozenset(Scope(scope) for scope in row.scopes if scope in Scope.__members__)
    if row.kind == "agent" and not scopes <= AGENT_SCOPES:
        log.warning("agent token %s carries scopes agents never get (%s); ignoring them", row.id, row.scopes)
        scopes &= AGENT_SCOPES
    return Principal(
        name=user.username,
        type=PrincipalType.agent if row.kind == "agent" else PrincipalType.token,
        user_id=user.id,
        scopes=scopes,
        environment_id=row.environment_id if row.kind == "agent" else None,
        token_id=row.id,
    )
