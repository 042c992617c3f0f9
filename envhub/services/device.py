"""OAuth 2.0 device authorization (RFC 8628): how the CLI signs in.

The CLI asks for a device code, shows the person a short user code and
``<envhub>/device``; the person, signed in to the dashboard, checks the code
and confirms. envhub then issues a personal access token with the requested
scopes (this works the same with or without an OpenID provider, and the CLI
only ever holds an envhub token, never the provider's). The CLI polls the
token endpoint and receives the token exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlmodel import Session, select

from envhub.config import get_settings
from envhub.domain import credentials
from envhub.domain.credentials import SecretKind
from envhub.domain.principals import Principal
from envhub.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from envhub.models import ApiToken, DeviceAuthorization, User
from envhub.models.base import utcnow
from envhub.services.common import AuditTarget, audited
from envhub.services.crypto import cipher
from envhub.services.tokens import create_personal_token, parse_scopes

DEVICE_CODE_SECONDS = 600
POLL_INTERVAL = 5
TOKEN_DAYS = 90
# Clients allowed to start a device sign-in; envhub's own CLI is a public client.
CLIENTS = {"envhub-cli": "envhub CLI"}


@dataclass(frozen=True, slots=True)
class DeviceStart:
    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str
    expires_in: int
    interval: int


class DeviceFlowError(Exception):
    """An RFC 8628 token-endpoint answer other than success (``error`` is the RFC's code)."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


def start(session: Session, *, client_id: str, scope: str) -> DeviceStart:
    if client_id not in CLIENTS:
        raise ValidationFailed(f"unknown client {client_id[:60]!r}", details={"field": "client_id"})
    if len(scope) > 200:
        raise ValidationFailed("the scope is longer than 200 characters", details={"field": "scope"})
    scopes = parse_scopes((scope or "read").split())
    issued = credentials.issue(SecretKind.device_code)
    for _ in range(5):  # user codes are short: on the rare collision, draw again
        code = credentials.user_code()
        if (
            session.exec(select(DeviceAuthorization.id).where(DeviceAuthorization.user_code == code)).first()
            is None
        ):
            break
    row = DeviceAuthorization(
        device_code_hash=issued.digest,
        user_code=code,
        client_id=client_id,
        scopes=scopes,
        expires_at=utcnow() + timedelta(seconds=DEVICE_CODE_SECONDS),
        interval=POLL_INTERVAL,
    )
    session.add(row)
    session.commit()
    base = get_settings().base_url
    return DeviceStart(
        device_code=issued.plain,
        user_code=code,
        verification_uri=f"{base}/device",
        verification_uri_complete=f"{base}/device?code={code}",
        expires_in=DEVICE_CODE_SECONDS,
        interval=POLL_INTERVAL,
    )


def pending(session: Session, *, actor: Principal, user_code: str) -> DeviceAuthorization:
    """The open request behind a user code, for the person to look at before confirming."""
    if not actor.is_person:
        raise PermissionDenied("only a person signed in to the dashboard can confirm a device")
    code = credentials.normalize_user_code(user_code)
    row = session.exec(select(DeviceAuthorization).where(DeviceAuthorization.user_code == code)).first()
    if row is None or row.expires_at <= utcnow():
        raise NotFound(
            "that code is unknown or has expired", hint="Start `envhub login` again for a new code."
        )
    if row.approved_at or row.denied_at:
        raise Conflict("that code was already used")
    return row


def approve(session: Session, *, actor: Principal, user_code: str) -> DeviceAuthorization:
    target = AuditTarget("device", name=user_code[:20])
    with audited(session, actor, "device.approve", target):
        row = pending(session, actor=actor, user_code=user_code)
        target.id = row.id
        new = create_personal_token(
            session=session,
            actor=actor,
            name=f"{CLIENTS[row.client_id]} ({utcnow():%Y-%m-%d})",
            scopes=list(row.scopes),
            expires_in_days=min(TOKEN_DAYS, get_settings().token_max_days),
            via="device",
        )
        row = session.get(DeviceAuthorization, row.id) or row
        row.approved_at, row.approved_by_id, row.token_id = utcnow(), actor.user_id, new.row.id
        row.token_sealed = cipher().seal(new.token, purpose=f"device:{row.id}")
        session.add(row)
        target.id = row.id
        target.name = row.user_code
        target.details = {"client_id": row.client_id, "token_id": new.row.id}
    return row


def deny(session: Session, *, actor: Principal, user_code: str) -> None:
    target = AuditTarget("device", name=user_code[:20])
    with audited(session, actor, "device.deny", target):
        row = pending(session, actor=actor, user_code=user_code)
        row.denied_at = utcnow()
        session.add(row)
        target.id = row.id
        target.name = row.user_code
        target.details = {"client_id": row.client_id}


def redeem(session: Session, *, device_code: str, client_id: str) -> tuple[str, ApiToken]:
    """The token endpoint's side: the token once approved, else an RFC 8628 error."""
    row = session.exec(
        select(DeviceAuthorization)
        .where(DeviceAuthorization.device_code_hash == credentials.digest(device_code))
        .with_for_update()
    ).first()
    if row is None or row.client_id != client_id:
        raise DeviceFlowError("invalid_grant", "unknown device code")
    now = utcnow()
    polled, row.last_polled_at = row.last_polled_at, now
    session.add(row)
    session.commit()
    if row.denied_at is not None:
        raise DeviceFlowError("access_denied", "the request was denied")
    if row.approved_at is None:
        if row.expires_at <= now:
            raise DeviceFlowError("expired_token", "the device code has expired")
        if polled is not None and now - polled < timedelta(seconds=row.interval):
            raise DeviceFlowError("slow_down", f"poll at most every {row.interval} seconds")
        raise DeviceFlowError("authorization_pending", "waiting for a person to confirm the code")
    if not row.token_sealed or row.token_id is None:
        raise DeviceFlowError("invalid_grant", "the token for this code was already handed out")
    token = cipher().open(row.token_sealed, purpose=f"device:{row.id}")
    row.token_sealed = None  # exactly once
    session.add(row)
    session.commit()
    issued = session.get(ApiToken, row.token_id)
    assert issued is not None
    return token, issued


def describe(session: Session, row: DeviceAuthorization) -> dict[str, str]:
    approver = session.get(User, row.approved_by_id) if row.approved_by_id else None
    return {
        "client": CLIENTS.get(row.client_id, row.client_id),
        "scopes": ", ".join(row.scopes),
        "user_code": row.user_code,
        "expires": row.expires_at.isoformat(),
        "approved_by": approver.username if approver else "",
    }
