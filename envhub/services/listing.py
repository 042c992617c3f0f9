"""Lists for programs: projects, a project's environments and the audit trail, by cursor.

The dashboard pages by offset (``page 2 of 5``); a program walking a list
while it changes needs pages that neither repeat nor skip a row, so these
continue after the last row seen (``services/cursors.py``). They return the
same view models as the dashboard's lists, and authorize the same way.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, or_
from sqlmodel import Session, col, select

from envhub.domain.phases import Phase
from envhub.domain.principals import Principal
from envhub.domain.specs import EnvironmentKind, Trigger
from envhub.models import Environment, Project, Team, User
from envhub.services import audit_log, cursors
from envhub.services.audit_log import AuditFilter
from envhub.services.common import teams_of
from envhub.services.cursors import CursorPage
from envhub.services.environment_views import EnvironmentRow, environment_row
from envhub.services.project_views import ProjectRow, project_row
from envhub.services.projects import ProjectSummary, get_project


def _like(value: str) -> str:
    escaped = value.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def project_page(
    *, session: Session, actor: Principal, cursor: str | None = None, limit: int = 20, search: str = ""
) -> CursorPage[ProjectRow]:
    """The projects the caller can see, by name (then id), after ``cursor``."""
    limit = cursors.clamp_limit(limit)
    live_envs = (
        select(Environment.project_id, func.count().label("n"))
        .where(Environment.phase != Phase.deleted)
        .group_by(col(Environment.project_id))
        .subquery()
    )
    query = (
        select(Project, Team.name, func.coalesce(live_envs.c.n, 0))
        .join(Team, col(Team.id) == Project.team_id)
        .outerjoin(live_envs, live_envs.c.project_id == Project.id)
    )
    visible = teams_of(session, actor)
    if visible is not None:
        query = query.where(col(Project.team_id).in_(visible))
    if search.strip():
        query = query.where(func.lower(col(Project.name)).like(_like(search.strip()), escape="\\"))
    if cursor:
        name, after = cursors.decode(cursor, "projects", (str, int))
        query = query.where(
            or_(col(Project.name) > name, (col(Project.name) == name) & (col(Project.id) > after))
        )
    rows = list(session.exec(query.order_by(col(Project.name), col(Project.id)).limit(limit + 1)))
    more = len(rows) > limit
    items = [project_row(ProjectSummary(project=p, team=t, environments=int(n))) for p, t, n in rows[:limit]]
    last = rows[limit - 1][0] if more else None
    return CursorPage(
        items=items, next_cursor=cursors.encode("projects", (last.name, last.id or 0)) if last else None
    )


def environment_page(
    *,
    session: Session,
    actor: Principal,
    project_id: int,
    cursor: str | None = None,
    limit: int = 20,
    phase: Phase | None = None,
    kind: EnvironmentKind | None = None,
    trigger: Trigger | None = None,
    search: str = "",
) -> CursorPage[EnvironmentRow]:
    """A project's environments, newest first, after ``cursor``, filtered.

    Deleted environments are left out unless ``phase`` asks for them. The
    key is (created_at, id), both descending: the id breaks ties between
    environments created in the same microsecond.
    """
    get_project(session=session, actor=actor, project_id=project_id)
    limit = cursors.clamp_limit(limit)
    where: list[Any] = [Environment.project_id == project_id]
    where.append(Environment.phase == phase if phase is not None else Environment.phase != Phase.deleted)
    if kind is not None:
        where.append(Environment.kind == kind)
    if trigger is not None:
        where.append(Environment.trigger == trigger)
    if search.strip():
        where.append(func.lower(col(Environment.name)).like(_like(search.strip()), escape="\\"))
    if cursor:
        stamp, after = cursors.decode(cursor, "environments", (datetime, int))
        created = datetime.fromisoformat(str(stamp))
        where.append(
            or_(
                col(Environment.created_at) < created,
                (col(Environment.created_at) == created) & (col(Environment.id) < after),
            )
        )
    rows = list(
        session.exec(
            select(Environment, User.username)
            .outerjoin(User, col(User.id) == Environment.created_by_id)
            .where(*where)
            .order_by(col(Environment.created_at).desc(), col(Environment.id).desc())
            .limit(limit + 1)
        )
    )
    more = len(rows) > limit
    last = rows[limit - 1][0] if more else None
    next_cursor = (
        cursors.encode("environments", (last.created_at.isoformat(), last.id or 0)) if last else None
    )
    return CursorPage(
        items=[environment_row(env, creator) for env, creator in rows[:limit]], next_cursor=next_cursor
    )


def audit_page(
    *,
    session: Session,
    actor: Principal,
    filters: AuditFilter | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> CursorPage[dict[str, Any]]:
    """Audit events the caller may read, newest first, after ``cursor``, as export records."""
    before = int(cursors.decode(cursor, "audit", (int,))[0]) if cursor else None
    limit = cursors.clamp_limit(limit)
    events = audit_log.events_before(
        session=session, actor=actor, filters=filters, before_id=before, limit=limit
    )
    more = len(events) > limit
    last = events[limit - 1] if more else None
    return CursorPage(
        items=[audit_log.as_record(event) for event in events[:limit]],
        next_cursor=cursors.encode("audit", (last.id or 0,)) if last else None,
    )
