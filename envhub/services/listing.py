"""Lists for programs: projects, a project's environments and the audit trail, by cursor.

The dashboard pages by offset (``page 2 of 5``); a program walking a list
while it changes needs pages that neither repeat nor skip a row, so REST and
MCP continue after the last row seen (``services/cursors.py``). Both page the
same use case (``projects.list_projects``, ``environments.list_environments``,
``audit_log.search_events``): these only shape its cursor pages into the view
models every face shows.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from envhub.domain.phases import Phase
from envhub.domain.principals import Principal
from envhub.domain.specs import EnvironmentKind, Trigger
from envhub.services import audit_log, environments, projects
from envhub.services.audit_log import AuditFilter
from envhub.services.cursors import CursorPage
from envhub.services.environment_views import EnvironmentRow, environment_row
from envhub.services.project_views import ProjectRow, project_row


def project_page(
    *, session: Session, actor: Principal, cursor: str | None = None, limit: int = 20, search: str = ""
) -> CursorPage[ProjectRow]:
    """The projects the caller can see, by name (then id), after ``cursor``."""
    page = projects.list_projects(session=session, actor=actor, cursor=cursor, limit=limit, search=search)
    return CursorPage(items=[project_row(item) for item in page.items], next_cursor=page.next_cursor)


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
    """A project's environments, newest first, after ``cursor``, filtered (deleted ones only when asked)."""
    page = environments.list_environments(
        session=session,
        actor=actor,
        project_id=project_id,
        cursor=cursor,
        limit=limit,
        phases=[phase] if phase is not None else (),
        kind=kind,
        trigger=trigger,
        search=search,
    )
    return CursorPage(
        items=[environment_row(env, creator) for env, creator in page.items], next_cursor=page.next_cursor
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
    page = audit_log.search_events(
        session=session, actor=actor, filters=filters, cursor=cursor, limit=limit, counted=False
    )
    return CursorPage(
        items=[audit_log.as_record(event) for event in page.items], next_cursor=page.next_cursor
    )
