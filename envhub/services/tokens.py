"""Tokens for machines: personal access tokens and agent tokens.

A token is shown once when it is made and stored only as a digest. It has a
name, scopes (which narrow its owner's roles), an expiry (required, at most
``ENVHUB_TOKEN_MAX_DAYS``), and records when it was last used. An agent token
is confined to one environment and never carries ``admin``: asking for it is
refused here, and a row that has it anyway (written past this code) is read
without it (services/authentication) and refused by the policy. Tokens cannot make tokens: only a person at
the dashboard (or confirming a device sign-in there) can, so a leaked token
cannot be used to mint lasting access.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlmodel import Session, col, select

from envhub.config import get_settings
from envhub.domain import credentials
from envhub.domain.credentials import SecretKind
from envhub.domain.policy import Action
from envhub.domain.principals import AGENT_SCOPES, Principal, Scope
from envhub.errors import NotFound, PermissionDenied, ScopeNotAllowed, ValidationFailed
from envhub.models import ApiToken, Environment
from envhub.models.base import utcnow
from envhub.services.access import authorize_environment
from envhub.services.common import AuditTarget, audited


@dataclass(frozen=True, slots=True)
class NewToken:
    token: str  # shown once
    row: ApiToken


def _people_only(actor: Principal) -> None:
    if not actor.is_person:
        raise PermissionDenied(
            "tokens cannot create tokens",
            hint="Create tokens from the dashboard's Tokens page, or sign in the CLI with `envhub login`.",
        )


def parse_scopes(values: list[str] | tuple[str, ...]) -> list[str]:
    wanted = sorted({value.strip().lower() for value in values if value.strip()})
    unknown = [value for value in wanted if value not in Scope.__members__]
    if unknown or not wanted:
        raise ValidationFailed(
            f"scopes must be among {', '.join(s.value for s in Scope)}"
            + (f"; unknown: {', '.join(unknown)}" if unknown else ""),
            details={"field": "scopes"},
        )
    return wanted


def agent_scopes(values: list[str] | tuple[str, ...]) -> list[str]:
    """An agent token's scopes: never ``admin`` (an agent may not delete or share)."""
    wanted = parse_scopes(values)
    refused = sorted(set(wanted) - {scope.value for scope in AGENT_SCOPES})
    if refused:
        raise ScopeNotAllowed(
            f"agent tokens cannot carry the {', '.join(refused)} scope",
            details={"field": "scopes", "refused": refused},
        )
    return wanted


def _name(value: str) -> str:
    name = value.strip()
    if not 1 <= len(name) <= 100 or any(ord(ch) < 32 for ch in name):
        raise ValidationFailed(
            "a token needs a name of 1-100 printable characters", details={"field": "name"}
        )
    return name


def _expiry(days: int) -> timedelta:
    limit = get_settings().token_max_days
    if not isinstance(days, int) or not 1 <= days <= limit:
        raise ValidationFailed(
            f"a token expires after 1 to {limit} days", details={"field": "expires_in_days"}
        )
    return timedelta(days=days)


def _issue(
    session: Session,
    actor: Principal,
    *,
    kind: str,
    name: str,
    scopes: list[str],
    days: int,
    environment_id: int | None,
    via: str,
) -> NewToken:
    assert actor.user_id is not None
    issued = credentials.issue(SecretKind.agent_token if kind == "agent" else SecretKind.personal_token)
    row = ApiToken(
        token_hash=issued.digest,
        hint=issued.hint,
        kind=kind,
        name=name,
        user_id=actor.user_id,
        environment_id=environment_id,
        scopes=scopes,
        created_via=via,
        expires_at=utcnow() + _expiry(days),
    )
    session.add(row)
    session.flush()
    return NewToken(token=issued.plain, row=row)


def create_personal_token(
    *,
    session: Session,
    actor: Principal,
    name: str,
    scopes: list[str],
    expires_in_days: int,
    via: str = "web",
) -> NewToken:
    target = AuditTarget("token", name=name[:100])
    with audited(session, actor, "token.create", target):
        _people_only(actor)
        new = _issue(
            session,
            actor,
            kind="personal",
            name=_name(name),
            scopes=parse_scopes(scopes),
            days=expires_in_days,
            environment_id=None,
            via=via,
        )
        target.id = new.row.id
        target.name = new.row.name
        target.details = {
            "kind": "personal",
            "scopes": new.row.scopes,
            "via": via,
            "expires_at": new.row.expires_at.isoformat(),
        }
    return new


def create_agent_token(
    *,
    session: Session,
    actor: Principal,
    environment_id: int,
    name: str,
    scopes: list[str],
    expires_in_days: int,
) -> NewToken:
    """A token an agent uses to act on one environment, with the creator's access there."""
    target = AuditTarget("environment", id=environment_id)
    with audited(session, actor, "token.create", target):
        _people_only(actor)
        environment = session.get(Environment, environment_id)
        if environment is None:
            raise NotFound(f"environment {environment_id} was not found")
        project = authorize_environment(
            session, actor, environment, Action.environment_read, what="environment"
        )
        target.name, target.team_id = f"{project.name}/{environment.name}", project.team_id
        # An agent works unattended: only someone who may shell in hands one out.
        authorize_environment(session, actor, environment, Action.environment_shell, what="environment")
        new = _issue(
            session,
            actor,
            kind="agent",
            name=_name(name),
            scopes=agent_scopes(scopes),
            days=expires_in_days,
            environment_id=environment_id,
            via="web",
        )
        target.team_id = project.team_id
        target.details = {
            "kind": "agent",
            "token_id": new.row.id,
            "name": new.row.name,
            "scopes": new.row.scopes,
            "expires_at": new.row.expires_at.isoformat(),
        }
    return new


def list_tokens(*, session: Session, actor: Principal, include_revoked: bool = False) -> list[ApiToken]:
    """The actor's own tokens (never anyone else's), newest first."""
    if actor.user_id is None or actor.is_agent:
        return []
    query = select(ApiToken).where(ApiToken.user_id == actor.user_id)
    if not include_revoked:
        query = query.where(col(ApiToken.revoked_at).is_(None))
    return list(session.exec(query.order_by(col(ApiToken.created_at).desc(), col(ApiToken.id).desc())))


def revoke_token(*, session: Session, actor: Principal, token_id: int) -> ApiToken:
    """Revoke one of the actor's tokens; a token may always revoke itself."""
    target = AuditTarget("token", id=token_id)
    with audited(session, actor, "token.revoke", target):
        row = session.get(ApiToken, token_id)
        if row is None or row.user_id != actor.user_id or actor.user_id is None:
            raise NotFound(f"token {token_id} was not found")
        if not actor.is_person and actor.token_id != token_id:
            raise PermissionDenied(
                "a token can only revoke itself", hint="Revoke other tokens from the dashboard."
            )
        target.name, target.details = row.name, {"kind": row.kind}
        target.record = row.revoked_at is None  # revoking twice changes nothing
        if row.revoked_at is None:
            row.revoked_at = utcnow()
            session.add(row)
    return row
