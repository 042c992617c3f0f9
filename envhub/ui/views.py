"""The pages' loaders: open a unit of work as the signed-in person, ask the services.

The view models themselves (and every rule behind them: permission flags, the
project's team, advice for a failed environment) are computed in
``services/*_views.py``, the same for every face. A loader opens its own unit
of work (so live reloads can run it in a worker thread) and never raises for a
missing object: it returns ``found=False`` and the page shows its not-found panel.
"""

from __future__ import annotations

from typing import Any, TypedDict

from envhub.errors import EnvhubError, NotFound
from envhub.services import (
    backing,
    backups,
    costs,
    environment_views,
    inspection,
    logs,
    ports,
    project_views,
    release_views,
    usage,
)
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
from envhub.services.pages import page_info
from envhub.services.project_views import EMPTY_HEADER, ProjectHeader, ProjectRow, ServiceRow
from envhub.ui.components.costs import costs_row
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
    "read_backups",
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
    who: str,
    *,
    project_id: int,
    environment_id: int,
    audit_offset: int,
    log_container: str = "",
    log_filter: logs.LogFilter = logs.EVERY_LINE,
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
                log_filter=log_filter,
            )
        except NotFound:
            return {"found": False}
        except EnvhubError as exc:  # e.g. forbidden: show it as not found, like the services do
            return {"found": False, "reason": exc.message}
        managed = backing.environment_services(session=session, actor=actor, environment_id=environment_id)
    # In a read-only session of its own: the runtime may take a moment to answer.
    with reading_as(who) as (session, actor):
        try:
            inside = inspection.environment_workloads(
                session=session, actor=actor, runtime=runtime, environment_id=environment_id
            )
        except EnvhubError as exc:
            inside = inspection.workloads_view(exc, local=runtime.name == "local")
        try:
            used = usage.environment_usage(
                session=session, actor=actor, runtime=runtime, environment_id=environment_id
            )
        except EnvhubError as exc:
            used = usage.unmeasured(f"Cannot measure right now ({exc.code}): {exc.message}")
        spent = costs_row(
            costs.environment_costs(session=session, actor=actor, environment_id=environment_id)
        )
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
        "idle": view["idle"],
        "log_containers": view["log_containers"],
        "terminal": view["terminal"],
        "logs": view["logs"],
        "logs_note": view["logs_note"],
        "workloads": inside,
        "usage": used,
        "costs": spent,
        "managed": managed,
    }


# -- backups of managed PostgreSQL --------------------------------------------------

BACKUPS_PAGE_SIZE = 10
RECENT_RESTORES = 5
_WORKING = ("queued", "running")


class BackupPanel(TypedDict):
    """One PostgreSQL service's Backups section: its status, a page of its backups, its recent restores."""

    service: str
    status: backups.BackupStatus
    rows: list[backups.BackupRow]
    restores: list[backups.RestoreRow]
    empty: bool  # nothing was ever backed up: the empty state
    active: bool  # a backup is queued or running: "Back up now" waits for it
    restoring: bool  # a restore into it is under way
    older: int  # the cursor of the next older page (0: none)
    paged: bool  # an older page is shown (not the newest)


def read_backups(who: str, *, environment_id: int, before: dict[str, int]) -> dict[str, BackupPanel]:
    """Each PostgreSQL service's section by name; ``before`` pages a service back (``{}`` if unreadable)."""
    panels: dict[str, BackupPanel] = {}
    with reading_as(who) as (session, actor):

        def page(service: str, cursor: int | None = None) -> backups.BackupsView:
            return backups.environment_backups(
                session=session,
                actor=actor,
                environment_id=environment_id,
                service=service,
                before=cursor,
                limit=BACKUPS_PAGE_SIZE,
            )

        try:
            overview = backups.environment_backups(
                session=session, actor=actor, environment_id=environment_id, limit=1
            )
        except EnvhubError:  # not found or not theirs: the environment page says so already
            return {}
        for status in overview["status"]:
            name = status["service"]
            newest = page(name)
            shown = page(name, before[name]) if before.get(name) else newest
            restores = [row for row in overview["restores"] if row["service"] == name]
            panels[name] = BackupPanel(
                service=name,
                status=status,
                rows=shown["backups"],
                restores=restores[:RECENT_RESTORES],
                empty=not newest["backups"],
                active=any(row["state"] in _WORKING for row in newest["backups"]),
                restoring=any(row["purpose"] == "restore" and row["state"] in _WORKING for row in restores),
                older=shown["next_before"] or 0,
                paged=bool(before.get(name)),
            )
    return panels


# -- deployment environments and releases ------------------------------------------

RELEASES_PAGE_SIZE = 10


class DiffLine(TypedDict):
    text: str
    tone: str  # add | del | hunk | head | same


class ChangeView(TypedDict):
    key: str
    change: str  # added | removed | changed
    lines: list[DiffLine]
    added: int
    removed: int


def diff_lines(diff: str) -> list[DiffLine]:
    """A unified diff's lines, each with the tone the diff viewer paints it in."""
    lines = []
    for line in diff.splitlines():
        if line.startswith(("+++", "---")):
            tone = "head"
        elif line.startswith("@@"):
            tone = "hunk"
        elif line.startswith("+"):
            tone = "add"
        elif line.startswith("-"):
            tone = "del"
        else:
            tone = "same"
        lines.append(DiffLine(text=line, tone=tone))
    return lines


def changes_of(changes: list[release_views.ObjectChangeView]) -> list[ChangeView]:
    """Object changes as the diff viewer shows them (each with its lines and how many changed)."""
    shown = []
    for change in changes:
        lines = diff_lines(change["diff"])
        shown.append(
            ChangeView(
                key=change["key"],
                change=change["change"],
                lines=lines,
                added=sum(1 for line in lines if line["tone"] == "add"),
                removed=sum(1 for line in lines if line["tone"] == "del"),
            )
        )
    return shown


class EnvironmentCard(TypedDict):
    """One deployment environment's card: what it runs, what waits, and whether this person may act."""

    id: int
    name: str
    phase: str
    url: str
    message: str
    href: str
    promote_from: str
    rules: str
    declares: str
    has_running: bool
    running: release_views.ReleaseRow
    has_waiting: bool
    waiting: release_views.ReleaseRow
    gates: list[release_views.GateView]
    approvals: list[release_views.ApprovalView]
    can_approve: bool
    approve_note: str  # why the viewer may not approve what waits ("" when they may)
    can_cancel: bool


EMPTY_RELEASE = release_views.ReleaseRow(
    id=0, number=0, environment_id=0, environment="", status="", tone="gray", trigger="", triggered_by="",
    commit="", short_commit="", ref="", digest="", chart="", images={}, message="", created="", created_at="",
    finished_at="", took="", source_release_id=None,
)  # fmt: skip


def read_deployments(who: str, *, project_id: int) -> dict[str, Any]:
    """A project's deployment environments side by side, with what waits in each and its gates."""
    with reading_as(who) as (session, actor):
        try:
            view = release_views.deployments_view(session=session, actor=actor, project_id=project_id)
        except EnvhubError:  # not found, or not theirs: the page says not found
            return {"found": False}
        cards = []
        for env in view["environments"]:
            running, latest = env["running"], env["latest"]
            card = EnvironmentCard(
                id=env["id"],
                name=env["name"],
                phase=env["phase"],
                url=env["url"],
                message=env["message"],
                href=f"/projects/{project_id}/environments/{env['id']}",
                promote_from=env["promote_from"],
                rules=env["rules"],
                declares=env["declares"],
                has_running=running is not None,
                running=running or EMPTY_RELEASE,
                has_waiting=latest is not None,
                waiting=latest or EMPTY_RELEASE,
                gates=[],
                approvals=[],
                can_approve=False,
                approve_note="",
                can_cancel=False,
            )
            if latest is not None:
                detail = release_views.release_detail(session=session, actor=actor, release_id=latest["id"])
                card["gates"], card["approvals"] = detail["gates"], detail["approvals"]
                card["can_approve"] = detail["allowed"]["approve"]
                card["approve_note"] = detail["approve_note"]
                card["can_cancel"] = detail["allowed"]["cancel"]
            cards.append(card)
    return {"found": True, "view": view, "cards": cards, "differences": changes_of(view["differences"])}


def read_releases(who: str, *, project_id: int, environment_id: int, offset: int) -> dict[str, Any]:
    """An environment's release history (``visible`` False when it is not a deployment environment)."""
    with reading_as(who) as (session, actor):
        try:
            deployments = release_views.deployments_view(session=session, actor=actor, project_id=project_id)
        except EnvhubError:
            return {"visible": False}
        mine = next((env for env in deployments["environments"] if env["id"] == environment_id), None)
        if mine is None:
            return {"visible": False}
        page = release_views.list_releases(
            session=session,
            actor=actor,
            environment_id=environment_id,
            offset=offset,
            limit=RELEASES_PAGE_SIZE,
        )
        every = release_views.list_releases(
            session=session, actor=actor, environment_id=environment_id, offset=0, limit=200
        )
    info = page_info(page)
    return {
        "visible": True,
        "name": mine["name"],
        "promote_from": mine["promote_from"],
        "promotes_to": [
            env["name"] for env in deployments["environments"] if env["promote_from"] == mine["name"]
        ],
        "can_release": deployments["can_release"],
        "running": mine["running"]["id"] if mine["running"] else 0,
        "rows": page.items,
        "choices": [
            {"id": str(row["id"]), "label": f"#{row['number']} · {row['short_commit']}"}
            for row in every.items
        ],
        "total": info["total"],
        "has_next": info["has_next"],
        "label": info["label"],
    }


def read_release(who: str, *, release_id: int, against: int | None) -> dict[str, Any]:
    with reading_as(who) as (session, actor):
        detail = release_views.release_detail(
            session=session, actor=actor, release_id=release_id, against=against
        )
    return {"detail": detail, "changes": changes_of(detail["changes"])}
