"""Reading the audit trail (writing happens in every other service, via common.audit).

A person sees the events of the teams they belong to and their own personal
events (sign-ins, tokens); the filters never widen that. Export streams the
same selection as JSON lines.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col, select

from envhub.domain.policy import Action
from envhub.domain.principals import Principal
from envhub.errors import PermissionDenied, ValidationFailed
from envhub.models import AuditEvent
from envhub.services.access import require_scope, teams_of
from envhub.services.audit_chain import ChainReport, verify_chain
from envhub.services.common import Page, clamp_page
from envhub.services.environments import get_environment

EXPORT_BATCH = 500


@dataclass(frozen=True, slots=True)
class AuditFilter:
    actor: str = ""
    target: str = ""
    action: str = ""
    outcome: str = ""
    since: datetime | None = None
    until: datetime | None = None
    team_id: int | None = None


def environment_audit_trail(
    *, session: Session, actor: Principal, environment_id: int, offset: int = 0, limit: int = 20
) -> Page[AuditEvent]:
    get_environment(session=session, actor=actor, environment_id=environment_id)
    offset, limit = clamp_page(offset, limit)
    where = [AuditEvent.target_type == "environment", AuditEvent.target_id == environment_id]
    total = session.exec(select(func.count()).select_from(AuditEvent).where(*where)).one()
    rows = session.exec(
        select(AuditEvent).where(*where).order_by(col(AuditEvent.id).desc()).offset(offset).limit(limit)
    )
    return Page(items=list(rows), total=int(total), offset=offset, limit=limit)


def recent_events(*, session: Session, actor: Principal, limit: int = 20) -> list[AuditEvent]:
    """Latest events in the actor's teams."""
    return search_events(session=session, actor=actor, limit=limit).items


def _like(value: str) -> str:
    escaped = value.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _conditions(session: Session, actor: Principal, filters: AuditFilter) -> list[ColumnElement[bool]]:
    require_scope(actor, Action.audit_read)
    for name in ("actor", "target", "action", "outcome"):
        if len(getattr(filters, name)) > 200:
            raise ValidationFailed(
                f"the {name} filter is longer than 200 characters", details={"field": name}
            )
    if filters.since and filters.until and filters.since > filters.until:
        raise ValidationFailed("'from' is after 'to'", details={"field": "since"})
    teams = teams_of(session, actor)
    where: list[ColumnElement[bool]] = []
    if teams is not None:
        if filters.team_id is not None and filters.team_id not in teams:
            teams = []  # another team's events: nothing, and no hint that it exists
        elif filters.team_id is not None:
            teams = [filters.team_id]
        mine = (
            col(AuditEvent.actor_id) == actor.user_id
            if actor.user_id is not None and filters.team_id is None
            else None
        )
        visible = col(AuditEvent.team_id).in_(teams or [-1])
        where.append(or_(visible, mine) if mine is not None else visible)
    elif filters.team_id is not None:
        where.append(col(AuditEvent.team_id) == filters.team_id)
    if filters.actor:
        where.append(func.lower(col(AuditEvent.actor)).like(_like(filters.actor), escape="\\"))
    if filters.target:
        where.append(func.lower(col(AuditEvent.target)).like(_like(filters.target), escape="\\"))
    if filters.action:
        where.append(func.lower(col(AuditEvent.action)).like(_like(filters.action), escape="\\"))
    if filters.outcome:
        where.append(col(AuditEvent.outcome) == filters.outcome)
    if filters.since:
        where.append(col(AuditEvent.time) >= filters.since)
    if filters.until:
        where.append(col(AuditEvent.time) <= filters.until)
    return where


def search_events(
    *,
    session: Session,
    actor: Principal,
    filters: AuditFilter | None = None,
    offset: int = 0,
    limit: int = 50,
) -> Page[AuditEvent]:
    if actor.is_agent:
        return Page(items=[], total=0, offset=0, limit=limit)
    where = _conditions(session, actor, filters or AuditFilter())
    offset, limit = clamp_page(offset, limit)
    total = session.exec(select(func.count()).select_from(AuditEvent).where(*where)).one()
    rows = session.exec(
        select(AuditEvent).where(*where).order_by(col(AuditEvent.id).desc()).offset(offset).limit(limit)
    )
    return Page(items=list(rows), total=int(total), offset=offset, limit=limit)


def as_record(event: AuditEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "id": event.id,
        "time": event.time.isoformat(),
        "actor": event.actor,
        "actor_id": event.actor_id,
        "principal_type": event.principal_type,
        "token_id": event.token_id,
        "action": event.action,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "target": event.target,
        "team_id": event.team_id,
        "outcome": event.outcome,
        "error_code": event.error_code,
        "source_ip": event.source_ip,
        "user_agent": event.user_agent,
        "details": event.details,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


def export_events(
    *, session: Session, actor: Principal, filters: AuditFilter | None = None
) -> Iterator[dict[str, Any]]:
    """Every matching event, oldest first, as plain records (for JSON lines)."""
    if actor.is_agent:
        return
    where = _conditions(session, actor, filters or AuditFilter())
    after = 0
    while True:
        rows = list(
            session.exec(
                select(AuditEvent)
                .where(*where, col(AuditEvent.id) > after)
                .order_by(col(AuditEvent.id))
                .limit(EXPORT_BATCH)
            )
        )
        if not rows:
            return
        for row in rows:
            yield as_record(row)
        after = rows[-1].id or after


def check_chain(*, session: Session, actor: Principal) -> ChainReport:
    """The whole chain's integrity, for anyone who may read audit events somewhere."""
    if not actor.is_system and (actor.is_agent or not teams_of(session, actor)):
        raise PermissionDenied("checking the audit chain needs a role in a team")
    return verify_chain(session)


def distinct_actions(*, session: Session, actor: Principal) -> list[str]:
    """Actions that occur in what the actor can see (for the filter's choices)."""
    if actor.is_agent:
        return []
    where = _conditions(session, actor, AuditFilter())
    return list(
        session.exec(select(AuditEvent.action).where(*where).distinct().order_by(col(AuditEvent.action)))
    )
