"""View models: what the pages show, read through the services.

Each loader opens its own unit of work (so live reloads can run it in a worker
thread) and returns plain dicts of strings; ORM rows never reach the state.
A loader never raises for a missing object: it returns ``found=False`` and the
page shows its not-found panel.
"""

from __future__ import annotations

from typing import Any, TypedDict

from envhub.domain.phases import Phase, is_deletable, is_redeployable
from envhub.domain.policy import Action
from envhub.errors import EnvhubError, NotFound, advice_for
from envhub.models import AuditEvent, Environment, JobRun, Project
from envhub.queue.events import project_channel
from envhub.services import audit_log, environments, projects, sharing, terminal
from envhub.domain import humanize as fmt
from envhub.ui import identity_views, workload_defaults, workloads
from envhub.ui.feedback import condition_view
from envhub.ui.state import acting_as, reading_as

PAGE_SIZE = 10
AUDIT_PAGE_SIZE = 8
_SERVING = frozenset({Phase.ready, Phase.updating})


class ProjectRow(TypedDict):
    name: str
    href: str
    description: str
    repo: str
    environments: str
    created: str


class ProjectHeader(TypedDict):
    name: str
    description: str
    repo: str
    ref: str
    command: str
    health_path: str
    team: str
    created: str
    created_stamp: str
    manifests: str  # "3 documents", or "" without raw manifests
    egress: str  # "2 CIDRs, 1 namespace", or "" without an allowlist


class EnvironmentRow(TypedDict):
    name: str
    href: str
    kind: str
    phase: str
    message: str
    url: str
    creator: str
    age: str
    age_stamp: str


class EnvironmentDetail(TypedDict):
    name: str
    phase: str
    message: str
    error_code: str
    advice: str
    kind: str
    url: str
    command: str
    ref: str
    repo: str
    health_path: str
    env_keys: str
    generation: str
    created: str
    created_stamp: str
    updated: str
    deleted: str
    condition: str
    condition_message: str
    condition_title: str
    condition_hint: str
    condition_tone: str


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
    time: str
    stamp: str
    actor: str
    action: str
    outcome: str
    error_code: str
    summary: str
    recording: str  # URL of a terminal session's recording, or ""


EMPTY_HEADER = ProjectHeader(
    name="",
    description="",
    repo="",
    ref="",
    command="",
    health_path="",
    team="",
    created="",
    created_stamp="",
    manifests="",
    egress="",
)
EMPTY_RUN = RunView(
    kind="", status="", attempts="", generation="", started="", took="", error="", error_code="", advice=""
)


def page_label(offset: int, count: int, total: int) -> str:
    if total == 0:
        return "No results"
    return f"{offset + 1}–{offset + count} of {total}"


# -- builders --------------------------------------------------------------


def project_row(project: Project, environment_count: int) -> ProjectRow:
    return ProjectRow(
        name=project.name,
        href=f"/projects/{project.id}",
        description=project.description,
        repo=project.repo_url or "",
        environments=str(environment_count),
        created=fmt.ago(project.created_at),
    )


def project_header(project: Project, team: str) -> ProjectHeader:
    return ProjectHeader(
        name=project.name,
        description=project.description,
        repo=project.repo_url or "",
        ref=project.default_ref or "",
        command=project.command,
        health_path=project.health_path,
        team=team,
        created=fmt.ago(project.created_at),
        created_stamp=fmt.stamp(project.created_at),
        manifests=workload_defaults.manifest_count(project.manifests),
        egress=workload_defaults.egress_summary(project.egress),
    )


def environment_row(environment: Environment, creator: str | None) -> EnvironmentRow:
    return EnvironmentRow(
        name=environment.name,
        href=f"/projects/{environment.project_id}/environments/{environment.id}",
        kind=environment.kind.value,
        phase=environment.phase.value,
        message=environment.message,
        url=(environment.public_url or "") if environment.phase is Phase.ready else "",
        creator=creator or "envhub",
        age=fmt.ago(environment.created_at),
        age_stamp=fmt.stamp(environment.created_at),
    )


def environment_detail(environment: Environment) -> EnvironmentDetail:
    spec = environment.spec
    # What the runtime reports apart from the phase: "absent" or "starting" are only
    # news while the environment is supposed to be serving; an unreachable cluster
    # is news whatever the environment is doing.
    condition = environment.condition or ""
    if environment.phase not in _SERVING and not (
        condition.startswith("cluster_") and environment.phase is not Phase.deleted
    ):
        condition = ""
    explained = condition_view(condition)
    return EnvironmentDetail(
        name=environment.name,
        phase=environment.phase.value,
        message=environment.message,
        error_code=environment.error_code or "",
        advice=advice_for(environment.error_code) if environment.phase is Phase.failed else "",
        kind=environment.kind.value,
        url=environment.public_url or "",
        command=str(spec.get("command", "")),
        ref=str(spec.get("ref") or ""),
        repo=str(spec.get("repo_url") or ""),
        health_path=str(spec.get("health_path") or "/"),
        env_keys=", ".join(sorted(spec.get("env") or {})),
        generation=f"{environment.observed_generation} of {environment.desired_generation}",
        created=fmt.ago(environment.created_at),
        created_stamp=fmt.stamp(environment.created_at),
        updated=fmt.ago(environment.updated_at),
        deleted=fmt.ago(environment.deleted_at),
        condition=condition,
        condition_message=environment.condition_message if condition else "",
        condition_title=explained["title"],
        condition_hint=explained["hint"],
        condition_tone=explained["tone"],
    )


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
    recording = ""
    if event.action == "environment.shell.end" and details.get("recording"):
        recording = f"/api/v1/terminal/recordings/{event.id}"
    return AuditRow(
        time=fmt.ago(event.time),
        stamp=fmt.stamp(event.time),
        actor=event.actor,
        action=event.action,
        outcome=event.outcome,
        error_code=event.error_code or "",
        summary=summary,
        recording=recording,
    )


def terminal_view(session: Any, actor: Any, environment: Environment) -> dict[str, Any]:
    """Whether the terminal can open, in which containers, and whether this person may type."""
    try:
        access = terminal.watchable(session=session, actor=actor, environment_id=environment.id or 0)
        may_drive = access.may_drive
    except EnvhubError:
        may_drive = False
    return {
        "ready": environment.phase in _SERVING and environment.desired_state == "present",
        "containers": workloads.terminal_containers(environment.spec),
        "can_shell": may_drive,
    }


# -- loaders ---------------------------------------------------------------


def read_projects(who: str, *, offset: int, search: str) -> dict[str, Any]:
    with reading_as(who) as (session, actor):
        page = projects.list_projects(
            session=session, actor=actor, offset=offset, limit=PAGE_SIZE, search=search.strip()
        )
        rows = [project_row(item.project, item.environments) for item in page.items]
        shared = sharing.list_shared_environments(session=session, actor=actor)
        return {
            "rows": rows,
            "shared": [identity_views.shared_row(item) for item in shared],
            "total": page.total,
            "has_next": page.has_next,
            "label": page_label(page.offset, len(rows), page.total),
            "channels": [project_channel(item.project.id or 0) for item in page.items],
        }


def read_project(who: str, *, project_id: int, offset: int) -> dict[str, Any]:
    with reading_as(who) as (session, actor):
        try:
            project = projects.get_project(session=session, actor=actor, project_id=project_id)
            page = environments.list_environments(
                session=session, actor=actor, project_id=project_id, offset=offset, limit=PAGE_SIZE
            )
        except NotFound:
            return {"found": False}
        team = next(
            (
                item.team
                for item in projects.list_projects(
                    session=session, actor=actor, search=project.name, limit=50
                ).items
                if item.project.id == project_id
            ),
            "",
        )
        rows = [environment_row(env, creator) for env, creator in page.items]
        return {
            "found": True,
            "header": project_header(project, team),
            "services": workload_defaults.service_rows(project.services),
            "rows": rows,
            "ids": {env.name: env.id for env, _ in page.items},
            "total": page.total,
            "has_next": page.has_next,
            "label": page_label(page.offset, len(rows), page.total),
        }


def read_environment(
    who: str, *, project_id: int, environment_id: int, audit_offset: int, log_container: str = ""
) -> dict[str, Any]:
    with acting_as(who) as (session, actor):
        try:
            environment, project, allowed = environments.environment_context(
                session=session, actor=actor, environment_id=environment_id
            )
            if environment.project_id != project_id:
                raise NotFound(f"environment {environment_id} is not in project {project_id}")
            run = environments.latest_run(session=session, actor=actor, environment_id=environment_id)
            trail = audit_log.environment_audit_trail(
                session=session,
                actor=actor,
                environment_id=environment_id,
                offset=audit_offset,
                limit=AUDIT_PAGE_SIZE,
            )
        except NotFound:
            return {"found": False}
        except EnvhubError as exc:  # e.g. forbidden: show it as not found, like the services do
            return {"found": False, "reason": exc.message}
        phase = environment.phase
        state = f"{phase.value}/{environment.observed_generation}/{environment.condition}"
        containers = workloads.log_containers(environment.spec)
        if log_container not in containers:
            log_container = ""
        view = {
            "found": True,
            "project_name": project.name,
            "detail": environment_detail(environment),
            "run": run_view(run) if run else EMPTY_RUN,
            "steps": step_rows(run) if run else [],
            "audit": [audit_row(event) for event in trail.items],
            "audit_total": trail.total,
            "audit_has_next": trail.has_next,
            "audit_label": page_label(trail.offset, len(trail.items), trail.total),
            "can_redeploy": environment.desired_state == "present"
            and is_redeployable(phase)
            and Action.environment_redeploy in allowed,
            "can_delete": environment.desired_state == "present"
            and is_deletable(phase)
            and Action.environment_delete in allowed,
            "can_share": Action.environment_share in allowed and phase is not Phase.deleted,
            "can_agent": Action.environment_shell in allowed and phase is not Phase.deleted,
            "log_containers": containers,
            "terminal": terminal_view(session, actor, environment),
            "logs": workloads.recent_logs(session, actor, environment_id, phase, log_container),
        }
    # Outside the unit of work: the runtime may take a moment to answer.
    view["workloads"] = workloads.read_workloads(who, environment_id, phase, state)
    return view
