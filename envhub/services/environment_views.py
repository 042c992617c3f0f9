"""View models of environments: what every face shows about one, computed once.

The dashboard, the REST API, the CLI and MCP all show an environment's phase,
its URL, its latest job with its steps, its audit trail and what the caller
may do to it. They get those facts from here as plain JSON-ready dicts (ids,
strings, ISO timestamps, booleans, lists), with the human readings ("3 min
ago", the advice for a failed environment) beside the machine ones, so no
face derives them again. ORM rows stay inside ``services/``.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any, TypedDict, cast

from sqlalchemy.orm import object_session
from sqlmodel import Session, select

from envhub.domain import humanize as fmt
from envhub.domain.phases import TONES, Phase, is_deletable, is_redeployable
from envhub.domain.policy import Action
from envhub.domain.principals import Principal
from envhub.domain.specs import EnvironmentKind, Trigger
from envhub.errors import EnvhubError, NotFound, advice_for
from envhub.models import AuditEvent, Environment, JobRun, Project, PullRequest
from envhub.queue.events import project_channel
from envhub.runtime.base import Runtime
from envhub.services import audit_log, environments, inspection, logs
from envhub.services.common import Page
from envhub.services.conditions import condition_view
from envhub.services.environment_listing import (
    EnvironmentFilters,
    ListedEnvironment,
    list_visible_environments,
)
from envhub.services.pages import PageInfo, page_info
from envhub.services.sleep_views import IdleView, idle_view

log = logging.getLogger(__name__)

_SERVING = frozenset({Phase.ready, Phase.updating})


def _iso(value: Any) -> str:
    return value.isoformat() if value is not None else ""


class EnvironmentRow(TypedDict):
    id: int
    project_id: int
    name: str
    href: str
    kind: str
    trigger: str  # manual, agent, pull_request or push
    phase: str
    message: str
    url: str  # "" unless it serves
    creator: str
    created_at: str
    age: str
    age_stamp: str


class DevcontainerPort(TypedDict):
    port: int
    label: str
    protocol: str
    url: str  # its public URL, or "" when the runtime gives it none (see the unsupported list)


class UnsupportedEntry(TypedDict):
    key: str  # the devcontainer.json key, e.g. "runArgs" or "features.ghcr.io/devcontainers/features/node:1"
    reason: str


class EnvironmentDetail(TypedDict):
    id: int
    project_id: int
    name: str
    phase: str
    message: str
    error_code: str
    advice: str
    kind: str
    trigger: str
    # What made it, in words ("pull request #2: Fix the header, by octocat"), and its page.
    source: str
    source_url: str
    url: str
    command: str
    ref: str
    repo: str
    health_path: str
    env_keys: str
    generation: str
    created_at: str
    created: str
    created_stamp: str
    updated: str
    deleted: str
    condition: str
    condition_message: str
    condition_title: str
    condition_hint: str
    condition_tone: str
    # The repository's devcontainer.json as the last deploy used it ("" when it had none):
    # its forwarded ports, and every key envhub did not honour, with why.
    devcontainer: str
    devcontainer_ports: list[DevcontainerPort]
    devcontainer_unsupported: list[UnsupportedEntry]


class StepRow(TypedDict):
    key: str
    title: str
    status: str
    detail: str
    timing: str


class RunView(TypedDict):
    kind: str
    status: str
    attempts: str
    generation: str
    started: str
    took: str
    error: str
    error_code: str
    advice: str


class AuditRow(TypedDict):
    id: int
    time: str
    stamp: str
    actor: str
    action: str
    outcome: str
    error_code: str
    summary: str
    recording: str  # URL of a terminal session's recording, or ""


class EnvironmentPermissions(TypedDict):
    """What the caller may do to the environment now (phase and rights together)."""

    can_redeploy: bool
    can_delete: bool
    can_share: bool
    can_shell: bool  # open and drive a terminal
    can_watch: bool  # watch someone else's terminal
    can_agent: bool  # hand out an agent token for it


class TerminalView(TypedDict):
    ready: bool  # a shell can open now
    containers: list[str]  # the containers one can pick; [] means the default
    can_shell: bool


class EnvironmentOverview(TypedDict):
    project_id: int
    project_name: str
    team_id: int
    detail: EnvironmentDetail
    run: RunView
    steps: list[StepRow]
    audit: list[AuditRow]
    audit_page: PageInfo
    permissions: EnvironmentPermissions
    idle: IdleView
    log_containers: list[str]
    log_container: str  # the one the logs are of ("" for all)
    terminal: TerminalView
    logs: list[str]
    logs_note: str  # why the lines are fewer than asked, or cannot be read (a bad search), else ""


EMPTY_DETAIL = cast(
    EnvironmentDetail,
    {
        key: 0 if key in ("id", "project_id") else [] if key.startswith("devcontainer_") else ""
        for key in EnvironmentDetail.__annotations__
    },
)
EMPTY_RUN = RunView(
    kind="", status="", attempts="", generation="", started="", took="", error="", error_code="", advice=""
)

# -- builders (internal: they take rows) -------------------------------------


def environment_row(environment: Environment, creator: str | None) -> EnvironmentRow:
    return EnvironmentRow(
        id=environment.id or 0,
        project_id=environment.project_id,
        name=environment.name,
        href=f"/projects/{environment.project_id}/environments/{environment.id}",
        kind=environment.kind.value,
        trigger=environment.trigger.value,
        phase=environment.phase.value,
        message=environment.message,
        url=(environment.public_url or "") if environment.phase is Phase.ready else "",
        creator=creator or "envhub",
        created_at=_iso(environment.created_at),
        age=fmt.ago(environment.created_at),
        age_stamp=fmt.stamp(environment.created_at),
    )


def _source(environment: Environment) -> tuple[str, str]:
    """What made the environment, in words, and the page to read about it."""
    if environment.trigger is Trigger.pull_request:
        session = object_session(environment)
        pr = (
            session.execute(select(PullRequest).where(PullRequest.environment_id == environment.id))
            .scalars()
            .first()
            if session is not None and environment.id is not None
            else None
        )
        if pr is not None:
            by = f", by {pr.author}" if pr.author else ""
            return f"pull request #{pr.number}: {pr.title}{by}", pr.html_url
        return "a pull request", ""
    return _TRIGGER_WORDS.get(environment.trigger.value, environment.trigger.value), ""


_TRIGGER_WORDS = {
    "manual": "created by hand",
    "agent": "created by an agent",
    "push": "a push to its branch",
}


def environment_detail(environment: Environment) -> EnvironmentDetail:
    spec = environment.spec
    source, source_url = _source(environment)
    # What the runtime reports apart from the phase: "absent" or "starting" are only
    # news while the environment is supposed to be serving; an unreachable cluster
    # is news whatever the environment is doing.
    condition = environment.condition or ""
    if environment.phase not in _SERVING and not (
        condition.startswith("cluster_") and environment.phase is not Phase.deleted
    ):
        condition = ""
    explained = condition_view(condition)
    found = _devcontainer(environment)
    return EnvironmentDetail(
        id=environment.id or 0,
        project_id=environment.project_id,
        name=environment.name,
        phase=environment.phase.value,
        message=environment.message,
        error_code=environment.error_code or "",
        advice=advice_for(environment.error_code) if environment.phase is Phase.failed else "",
        kind=environment.kind.value,
        trigger=environment.trigger.value,
        source=source,
        source_url=source_url,
        url=environment.public_url or "",
        command=str(spec.get("command", "")),
        ref=str(spec.get("ref") or ""),
        repo=str(spec.get("repo_url") or ""),
        health_path=str(spec.get("health_path") or "/"),
        env_keys=", ".join(sorted(spec.get("env") or {})),
        generation=f"{environment.observed_generation} of {environment.desired_generation}",
        created_at=_iso(environment.created_at),
        created=fmt.ago(environment.created_at),
        created_stamp=fmt.stamp(environment.created_at),
        updated=fmt.ago(environment.updated_at),
        deleted=fmt.ago(environment.deleted_at),
        condition=condition,
        condition_message=environment.condition_message if condition else "",
        condition_title=explained["title"],
        condition_hint=explained["hint"],
        condition_tone=explained["tone"],
        devcontainer=found[0],
        devcontainer_ports=found[1],
        devcontainer_unsupported=found[2],
    )


def _devcontainer(environment: Environment) -> tuple[str, list[DevcontainerPort], list[UnsupportedEntry]]:
    """The detail's devcontainer fields, from what the runtime recorded (a summary of domain/devcontainer)."""
    found = environment.devcontainer if environment.phase is not Phase.deleted else None
    if not isinstance(found, dict):
        return "", [], []
    ports = [
        DevcontainerPort(
            port=int(port.get("port", 0)),
            label=str(port.get("label", "")),
            protocol=str(port.get("protocol", "http")),
            url=str(port.get("url") or ""),
        )
        for port in found.get("ports", [])
        if isinstance(port, dict)
    ]
    unsupported = [
        UnsupportedEntry(key=str(entry.get("key", "")), reason=str(entry.get("reason", "")))
        for entry in found.get("unsupported", [])
        if isinstance(entry, dict)
    ]
    return str(found.get("path", "")), ports, unsupported


def step_rows(run: JobRun) -> list[StepRow]:
    rows = []
    for step in run.steps:
        status = str(step.get("status", "pending"))
        timing = ""
        if status in ("done", "failed", "skipped"):
            timing = fmt.span(step.get("started_at"), step.get("finished_at"))
        elif status == "running":
            timing = fmt.span(step.get("started_at"), None) + " so far"
        rows.append(
            StepRow(
                key=str(step.get("key", "")),
                title=str(step.get("title", "")),
                status=status,
                detail=str(step.get("detail") or ""),
                timing=timing,
            )
        )
    return rows


def run_view(run: JobRun) -> RunView:
    took = ""
    if run.started_at and run.finished_at:
        took = "took " + fmt.span(run.started_at, run.finished_at)
    elif run.started_at:
        took = "running for " + fmt.span(run.started_at, None)
    return RunView(
        kind=run.kind,
        status=run.status.value,
        attempts=str(run.attempts),
        generation=str(run.generation),
        started=fmt.ago(run.started_at or run.created_at),
        took=took,
        error=run.error or "",
        error_code=run.error_code or "",
        advice=advice_for(run.error_code) if run.error_code else "",
    )


def audit_row(event: AuditEvent) -> AuditRow:
    details: dict[str, Any] = event.details or {}
    summary = str(details.get("message") or "")
    if not summary and "from" in details and "to" in details:
        summary = f"{details['from']} → {details['to']}"
    elif not summary and "generation" in details:
        summary = f"generation {details['generation']}"
    elif not summary and "kind" in details:
        summary = f"{details['kind']} environment"
    elif not summary and "terminal" in details:
        container = details.get("container")
        summary = f"session {str(details['terminal'])[:8]}" + (f" in {container}" if container else "")
    elif not summary and "service" in details:  # managed services: a backup, a restore, a rotation
        summary = str(details["service"])
        if "backup" in details:
            summary += f", backup {details['backup']}"
        if details.get("trigger"):
            summary += f" ({details['trigger']})"
    recording = ""
    if event.action == "environment.shell.end" and details.get("recording"):
        recording = f"/api/v1/terminal/recordings/{event.id}"
    return AuditRow(
        id=event.id or 0,
        time=fmt.ago(event.time),
        stamp=fmt.stamp(event.time),
        actor=event.actor,
        action=event.action,
        outcome=event.outcome,
        error_code=event.error_code or "",
        summary=summary,
        recording=recording,
    )


def permissions(environment: Environment, allowed: frozenset[Action]) -> EnvironmentPermissions:
    phase, present = environment.phase, environment.desired_state == "present"
    alive = phase is not Phase.deleted
    watch = Action.environment_read in allowed and Action.environment_watch in allowed
    return EnvironmentPermissions(
        can_redeploy=present and is_redeployable(phase) and Action.environment_redeploy in allowed,
        can_delete=present and is_deletable(phase) and Action.environment_delete in allowed,
        can_share=alive and Action.environment_share in allowed,
        can_shell=watch and Action.environment_shell in allowed,
        can_watch=watch,
        can_agent=alive and Action.environment_shell in allowed,
    )


PAGE_LOG_SCAN = 5000


def _recent_logs(
    *,
    session: Session,
    actor: Principal,
    runtime: Runtime,
    environment_id: int,
    phase: Phase,
    container: str = "",
    chosen: logs.LogFilter = logs.EVERY_LINE,
) -> tuple[list[str], str]:
    """The last lines of output that pass ``chosen`` (of one container when ``container`` is set),
    and a note for the reader; no lines when unavailable."""
    if phase in inspection.GONE:
        return [], ""
    try:
        page = logs.environment_logs(
            session=session,
            actor=actor,
            runtime=runtime,
            environment_id=environment_id,
            tail=inspection.LOG_LINES,
            container=container or None,
            chosen=chosen,
            # The page re-reads every few seconds: a search there scans less than a download does.
            scan=PAGE_LOG_SCAN,
        )
    except EnvhubError as exc:  # logs are a nicety: never fail a view for them
        log.debug("logs of environment %s unavailable: %s", environment_id, exc)
        return [], exc.message if chosen != logs.EVERY_LINE else ""
    except OSError as exc:
        log.debug("logs of environment %s unavailable: %s", environment_id, exc)
        return [], ""
    if page["matched"] > len(page["lines"]):
        return page["lines"], f"{page['matched']} lines match; the last {len(page['lines'])} are shown."
    if page["capped"]:
        return page["lines"], f"Only the last {page['scanned']} lines were searched."
    return page["lines"], ""


# -- what the faces call -----------------------------------------------------


def environment_permissions(
    *, session: Session, actor: Principal, environment_id: int
) -> EnvironmentPermissions:
    environment, _project, allowed = environments.environment_context(
        session=session, actor=actor, environment_id=environment_id
    )
    return permissions(environment, allowed)


def environment_rows(
    *,
    session: Session,
    actor: Principal,
    project_id: int,
    offset: int = 0,
    limit: int = 20,
    phases: Collection[Phase] = (),
) -> tuple[list[EnvironmentRow], PageInfo]:
    """A project's environments (newest first, only ``phases`` if given) and where the page is."""
    page = environments.list_environments(
        session=session, actor=actor, project_id=project_id, offset=offset, limit=limit, phases=phases
    )
    rows = [environment_row(environment, creator) for environment, creator in page.items]
    return rows, page_info(page)


def environment_summary(*, session: Session, actor: Principal, environment_id: int) -> EnvironmentDetail:
    """One environment's facts (no job, trail or logs): what a create or a status call returns."""
    return environment_detail(
        environments.get_environment(session=session, actor=actor, environment_id=environment_id)
    )


def environment_overview(
    *,
    session: Session,
    actor: Principal,
    runtime: Runtime,
    environment_id: int,
    project_id: int | None = None,
    audit_offset: int = 0,
    audit_limit: int = 8,
    log_container: str = "",
    log_filter: logs.LogFilter = logs.EVERY_LINE,
) -> EnvironmentOverview:
    """Everything the environment page shows but its workloads (``inspection.environment_workloads``).

    ``project_id``, when given, must be the environment's project (a URL naming
    both must not show one under another's name): otherwise ``NotFound``.
    """
    environment, project, allowed = environments.environment_context(
        session=session, actor=actor, environment_id=environment_id
    )
    if project_id is not None and environment.project_id != project_id:
        raise NotFound(f"environment {environment_id} is not in project {project_id}")
    status = _status(session, actor, environment, allowed)
    trail: Page[AuditEvent] = audit_log.environment_audit_trail(
        session=session, actor=actor, environment_id=environment_id, offset=audit_offset, limit=audit_limit
    )
    flags = status["permissions"]
    containers = inspection.log_containers(environment.spec, runtime=runtime)
    if log_container not in containers:
        log_container = ""
    lines, note = _recent_logs(
        session=session,
        actor=actor,
        runtime=runtime,
        environment_id=environment_id,
        phase=environment.phase,
        container=log_container,
        chosen=log_filter,
    )
    return EnvironmentOverview(
        project_id=environment.project_id,
        project_name=project.name,
        team_id=project.team_id,
        detail=status["detail"],
        run=status["run"],
        steps=status["steps"],
        audit=[audit_row(event) for event in trail.items],
        audit_page=page_info(trail),
        permissions=flags,
        idle=status["idle"],
        log_containers=containers,
        log_container=log_container,
        terminal=TerminalView(
            ready=environment.phase in _SERVING and environment.desired_state == "present",
            containers=containers,
            can_shell=flags["can_shell"],
        ),
        logs=lines,
        logs_note=note,
    )


# -- every environment one can see ---------------------------------------------


class ListingRow(TypedDict):
    id: int
    project_id: int
    name: str
    href: str
    project: str
    team: str
    phase: str
    tone: str  # the phase's Radix colour (domain.phases.TONES)
    kind: str
    trigger: str
    message: str
    url: str  # "" unless it serves
    creator: str
    created_at: str
    age: str
    age_stamp: str


class FilterOption(TypedDict):
    value: str  # what goes in the query (an id, a phase, a username)
    label: str


class ListingOptions(TypedDict):
    projects: list[FilterOption]
    teams: list[FilterOption]
    phases: list[FilterOption]
    kinds: list[FilterOption]
    triggers: list[FilterOption]
    creators: list[FilterOption]


class PhaseCount(TypedDict):
    phase: str
    tone: str
    count: int


class EnvironmentListing(TypedDict):
    rows: list[ListingRow]
    next_cursor: str  # pass back as ``cursor`` for the next page; "" on the last one
    total: int  # matching the filters
    visible_total: int  # visible at all: 0 means "none yet", not "none match"
    phase_counts: list[PhaseCount]  # phases present, lifecycle order, every filter but the phase applied
    options: ListingOptions
    filters: dict[str, str]  # the filters applied, as URL query parameters
    channels: list[str]  # change-notification channels that can alter this list


_TRIGGER_LABELS = {
    "manual": "by hand",
    "agent": "agent",
    "pull_request": "pull request",
    "push": "branch push",
}


def listing_row(item: ListedEnvironment) -> ListingRow:
    environment = item.environment
    return ListingRow(
        id=environment.id or 0,
        project_id=environment.project_id,
        name=environment.name,
        href=f"/projects/{environment.project_id}/environments/{environment.id}",
        project=item.project,
        team=item.team,
        phase=environment.phase.value,
        tone=TONES[environment.phase],
        kind=environment.kind.value,
        trigger=environment.trigger.value,
        message=environment.message,
        url=(environment.public_url or "") if environment.phase is Phase.ready else "",
        creator=item.creator or "envhub",
        created_at=_iso(environment.created_at),
        age=fmt.ago(environment.created_at),
        age_stamp=fmt.stamp(environment.created_at),
    )


def visible_environments(
    *,
    session: Session,
    actor: Principal,
    filters: EnvironmentFilters | None = None,
    cursor: str | None = None,
    limit: int = 50,
    facets: bool = True,
) -> EnvironmentListing:
    """The environments ``actor`` can see in every project and team, newest first, a page at a time.

    ``facets=False`` for faces that show only the rows and the total (REST,
    MCP): the phase counts and filter options are not computed (left empty).

    Deleted ones only when the filters ask (``include_deleted`` or phase
    ``deleted``). ``ValidationFailed`` (field ``cursor``) for a cursor this
    list did not hand out.
    """
    listing = list_visible_environments(
        session=session, actor=actor, filters=filters, cursor=cursor, limit=limit, facets=facets
    )
    options = listing.options
    multiple_teams = len(options.teams) > 1
    return EnvironmentListing(
        rows=[listing_row(item) for item in listing.items],
        next_cursor=listing.next_cursor,
        total=listing.total,
        visible_total=listing.visible_total,
        phase_counts=[
            PhaseCount(phase=phase.value, tone=TONES[phase], count=listing.phase_counts[phase.value])
            for phase in Phase
            if phase.value in listing.phase_counts
        ],
        options=ListingOptions(
            projects=[
                FilterOption(value=str(pid), label=f"{team}/{name}" if multiple_teams else name)
                for pid, name, team in options.projects
            ],
            teams=[FilterOption(value=str(tid), label=name) for tid, name in options.teams],
            phases=[FilterOption(value=phase.value, label=phase.value) for phase in Phase],
            kinds=[FilterOption(value=kind.value, label=kind.value) for kind in EnvironmentKind],
            triggers=[
                FilterOption(value=trigger.value, label=_TRIGGER_LABELS.get(trigger.value, trigger.value))
                for trigger in Trigger
            ],
            creators=[FilterOption(value=name, label=name) for name in options.creators],
        ),
        filters=listing.filters.to_query(),
        channels=[project_channel(pid) for pid in options.watched_projects],
    )


class EnvironmentStatus(TypedDict):
    """Where an environment is: its facts, its latest job with its steps, what the caller may do."""

    detail: EnvironmentDetail
    run: RunView
    steps: list[StepRow]
    permissions: EnvironmentPermissions
    idle: IdleView  # idle sleep, TTL and pin


class EnvironmentEvents(TypedDict):
    """What happened to an environment (its audit trail), newest first."""

    events: list[AuditRow]
    page: PageInfo


def environment_status(*, session: Session, actor: Principal, environment_id: int) -> EnvironmentStatus:
    """The environment page's status part, without its logs, trail or workloads (no runtime call)."""
    environment, _project, allowed = environments.environment_context(
        session=session, actor=actor, environment_id=environment_id
    )
    return _status(session, actor, environment, allowed)


def _status(
    session: Session, actor: Principal, environment: Environment, allowed: frozenset[Action]
) -> EnvironmentStatus:
    """The status part, said once: the environment page shows it within its overview."""
    assert environment.id is not None
    run = environments.latest_run(session=session, actor=actor, environment_id=environment.id)
    project = session.get(Project, environment.project_id)
    assert project is not None
    return EnvironmentStatus(
        detail=environment_detail(environment),
        run=run_view(run) if run else EMPTY_RUN,
        steps=step_rows(run) if run else [],
        permissions=permissions(environment, allowed),
        idle=idle_view(environment, project, allowed),
    )


def environment_events(
    *, session: Session, actor: Principal, environment_id: int, offset: int = 0, limit: int = 20
) -> EnvironmentEvents:
    trail: Page[AuditEvent] = audit_log.environment_audit_trail(
        session=session, actor=actor, environment_id=environment_id, offset=offset, limit=limit
    )
    return EnvironmentEvents(events=[audit_row(event) for event in trail.items], page=page_info(trail))
