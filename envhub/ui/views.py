"""The pages' loaders: open a unit of work as the signed-in person, ask the services.

The view models themselves (and every rule behind them: permission flags, the
project's team, advice for a failed environment) are computed in
``services/*_views.py``, the same for every face. A loader opens its own unit
of work (so live reloads can run it in a worker thread) and never raises for a
missing object: it returns ``found=False`` and the page shows its not-found panel.
"""

from __future__ import annotations

from typing import Any

from envhub.errors import EnvhubError, NotFound
from envhub.services import environment_views, inspection, ports, project_views
from envhub.services.environment_listing import filters_from_query
from envhub.services.environment_views import (
    EMPTY_RUN,
    AuditRow,
    EnvironmentDetail,
    EnvironmentRow,
    FilterOption,
    ListingRow,
    PhaseCount,
    RunView,
    StepRow,
)
from envhub.services.project_views import EMPTY_HEADER, ProjectHeader, ProjectRow, ServiceRow
from envhub.ui.state import acting_as, reading_as

__all__ = [
    "AUDIT_PAGE_SIZE",
    "EMPTY_HEADER",
    "EMPTY_RUN",
    "PAGE_SIZE",
    "AuditRow",
    "EnvironmentDetail",
    "EnvironmentRow",
    "FilterOption",
    "ListingRow",
    "PhaseCount",
    "ProjectHeader",
    "ProjectRow",
    "RunView",
    "ServiceRow",
    "StepRow",
    "read_environment",
    "read_environments",
    "read_project",
    "read_projects",
]

PAGE_SIZE = 10
AUDIT_PAGE_SIZE = 8
LISTING_PAGE_SIZE = 25


def read_projects(who: str, *, offset: int, search: str) -> dict[str, Any]:
    with reading_as(who) as (session, actor):
        view = project_views.projects_overview(
            session=session, actor=actor, offset=offset, limit=PAGE_SIZE, search=search
        )
    page = view["page"]
    return {
        "rows": view["rows"],
        "shared": view["shared"],
        "total": page["total"],
        "has_next": page["has_next"],
        "label": page["label"],
        "channels": view["channels"],
    }


def read_environments(who: str, *, query: dict[str, str], cursor: str) -> dict[str, Any]:
    """Every environment the person can see, filtered as the page's URL says (``ValidationFailed`` if
    the URL's filters are not valid)."""
    filters = filters_from_query(query)
    with reading_as(who) as (session, actor):
        view = environment_views.visible_environments(
            session=session, actor=actor, filters=filters, cursor=cursor or None, limit=LISTING_PAGE_SIZE
        )
    return dict(view)


def read_project(who: str, *, project_id: int, offset: int) -> dict[str, Any]:
    with reading_as(who) as (session, actor):
        try:
            view = project_views.project_overview(
                session=session, actor=actor, project_id=project_id, offset=offset, limit=PAGE_SIZE
            )
        except NotFound:
            return {"found": False}
    page = view["page"]
    return {
        "found": True,
        "header": view["header"],
        "services": view["services"],
        "rows": view["rows"],
        "ids": {row["name"]: row["id"] for row in view["rows"]},
        "total": page["total"],
        "has_next": page["has_next"],
        "label": page["label"],
    }


def read_environment(
    who: str, *, project_id: int, environment_id: int, audit_offset: int, log_container: str = ""
) -> dict[str, Any]:
    runtime = ports.runtime()
    with acting_as(who) as (session, actor):
        try:
            view = environment_views.environment_overview(
                session=session,
                actor=actor,
                runtime=runtime,
                environment_id=environment_id,
                project_id=project_id,
                audit_offset=audit_offset,
                audit_limit=AUDIT_PAGE_SIZE,
                log_container=log_container,
            )
        except NotFound:
            return {"found": False}
        except EnvhubError as exc:  # e.g. forbidden: show it as not found, like the services do
            return {"found": False, "reason": exc.message}
    # In a read-only session of its own: the runtime may take a moment to answer.
    with reading_as(who) as (session, actor):
        try:
            inside = inspection.environment_workloads(
                session=session, actor=actor, runtime=runtime, environment_id=environment_id
            )
        except EnvhubError as exc:
            inside = inspection.workloads_view(exc, local=runtime.name == "local")
    audit = view["audit_page"]
    flags = view["permissions"]
    return {
        "found": True,
        "project_name": view["project_name"],
        "detail": view["detail"],
        "run": view["run"],
        "steps": view["steps"],
        "audit": view["audit"],
        "audit_total": audit["total"],
        "audit_has_next": audit["has_next"],
        "audit_label": audit["label"],
        "can_redeploy": flags["can_redeploy"],
        "can_delete": flags["can_delete"],
        "can_share": flags["can_share"],
        "can_agent": flags["can_agent"],
        "log_containers": view["log_containers"],
        "terminal": view["terminal"],
        "logs": view["logs"],
        "workloads": inside,
    }
