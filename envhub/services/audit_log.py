"""Reading the audit trail (writing happens in every other service)."""

from __future__ import annotations

from sqlalchemy import func
from sqlmodel import Session, col, select

from envhub.domain.principals import Principal
from envhub.models import AuditEvent
from envhub.services.common import Page, clamp_page, teams_of
from envhub.services.environments import get_environment


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
    teams = teams_of(session, actor)
    query = select(AuditEvent).order_by(col(AuditEvent.id).desc()).limit(max(1, min(limit, 200)))
    if teams is not None:
        query = query.where(col(AuditEvent.team_id).in_(teams))
    return list(session.exec(query))
