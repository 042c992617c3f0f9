"""Browser sessions: stored server-side, named by a random cookie, rotated at sign-in.

The cookie holds only a random token; the row holds its digest, the person,
and when it expires (absolutely, and after inactivity). Revoking the row ends
the session everywhere at once, including open dashboards and sockets, since
every request and every dashboard event resolves the cookie again.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import timedelta

from sqlmodel import Session, col, select, update

from envhub.config import Settings, get_settings
from envhub.domain import credentials
from envhub.domain.credentials import SecretKind
from envhub.errors import SecretUnreadable
from envhub.models import User, WebSession
from envhub.models.base import utcnow
from envhub.services.crypto import cipher

# __Host- cookies are refused by browsers unless Secure, Path=/ and without a
# Domain: they cannot be planted by a sibling subdomain (an environment's URL).
_SESSION, _LOGIN = "envhub_session", "envhub_login"
# Writing last_seen_at on every request would turn reads into writes.
_TOUCH_EVERY = timedelta(seconds=60)


def session_cookie_name(settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    return f"__Host-{_SESSION}" if settings.secure_cookies else _SESSION


def login_cookie_name(settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    return f"__Host-{_LOGIN}" if settings.secure_cookies else _LOGIN


@dataclass(frozen=True, slots=True)
class NewSession:
    token: str  # the cookie value: give it to the browser, never store it
    row: WebSession


def start_session(
    session: Session,
    *,
    user: User,
    method: str,
    source_ip: str | None,
    user_agent: str | None,
    replaces: str | None = None,
    refresh_token: str | None = None,
    id_token: str | None = None,
) -> NewSession:
    """A new session for ``user`` (caller commits). The session named by
    ``replaces`` (the browser's previous cookie) ends: a sign-in never keeps a
    session id that existed before it (session fixation)."""
    settings = get_settings()
    if replaces:
        revoke(session, token=replaces)
    issued = credentials.issue(SecretKind.session)
    now = utcnow()
    assert user.id is not None
    sealer = cipher()
    row = WebSession(
        token_hash=issued.digest,
        user_id=user.id,
        method=method,
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(seconds=settings.session_max_age),
        source_ip=(source_ip or "")[:64],
        user_agent=(user_agent or "")[:300],
        recheck_at=now + timedelta(seconds=settings.oidc_recheck_interval) if refresh_token else None,
    )
    session.add(row)
    session.flush()
    if refresh_token:
        row.oidc_refresh_token = sealer.seal(refresh_token, purpose=f"session:{row.id}:refresh")
    if id_token:
        row.oidc_id_token = sealer.seal(id_token, purpose=f"session:{row.id}:id_token")
    return NewSession(token=issued.plain, row=row)


def live_session(session: Session, token_hash: str, *, lock: bool = False) -> WebSession | None:
    """The session with this digest if it has not ended, expired or gone idle."""
    query = select(WebSession).where(
        WebSession.token_hash == token_hash, col(WebSession.revoked_at).is_(None)
    )
    row = session.exec(query.with_for_update() if lock else query).first()
    if row is None:
        return None
    now = utcnow()
    idle = timedelta(seconds=get_settings().session_idle_timeout)
    if row.expires_at <= now or row.last_seen_at + idle <= now:
        return None
    return row


def touch(session: Session, row: WebSession) -> None:
    """Record activity (at most once a minute), which keeps the session from going idle."""
    now = utcnow()
    if now - row.last_seen_at >= _TOUCH_EVERY:
        session.exec(update(WebSession).where(col(WebSession.id) == row.id).values(last_seen_at=now))
        session.commit()
        row.last_seen_at = now


def revoke(session: Session, *, token: str | None = None, row: WebSession | None = None) -> WebSession | None:
    """End a session (caller commits). Returns it, or None when there was none."""
    if row is None and token:
        row = session.exec(
            select(WebSession).where(WebSession.token_hash == credentials.digest(token))
        ).first()
    if row is None or row.revoked_at is not None:
        return None
    row.revoked_at = utcnow()
    session.add(row)
    return row


def revoke_all_for(session: Session, user_id: int) -> int:
    """End every session of a person (caller commits)."""
    rows = list(
        session.exec(
            select(WebSession).where(WebSession.user_id == user_id, col(WebSession.revoked_at).is_(None))
        )
    )
    for row in rows:
        revoke(session, row=row)
    return len(rows)


def csrf_token(token_hash: str) -> str:
    """The anti-CSRF token of a session: derived from it, so nothing more is stored.

    Pages get it from the server (it is never in a cookie another site could
    make the browser send); cookie-authenticated requests that change state
    must echo it in ``X-CSRF-Token`` or a ``csrf_token`` form field.
    """
    key = get_settings().derived_key("csrf")
    return hmac.new(key, token_hash.encode(), hashlib.sha256).hexdigest()


def csrf_valid(token_hash: str, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(
        csrf_token(token_hash).encode(), (presented or "").encode()
    )


def sealed_id_token(row: WebSession) -> str | None:
    """The provider's ID token of a session (the hint its logout wants), if still readable."""
    if not row.oidc_id_token:
        return None
    try:
        return cipher().open(row.oidc_id_token, purpose=f"session:{row.id}:id_token")
    except SecretUnreadable:
        return None
