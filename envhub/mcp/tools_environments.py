"""Tools for environments: find, create, change, wait for, inspect, run commands in, delete.

Each one opens a unit of work, calls the use case or view with the caller,
and returns the view model every face shows: the same calls as REST's routes
(``api/v1/environments.py``), so an agent and a script see the same answers.
Authorization and the audit record happen in the services.
"""

from __future__ import annotations

from typing import Annotated, Literal, TypedDict

from pydantic import Field

from envhub.domain.logs import MAX_SEARCH
from envhub.domain.phases import Phase
from envhub.domain.principals import Principal
from envhub.domain.specs import EnvironmentKind, Trigger
from envhub.errors import ValidationFailed
from envhub.mcp.schemas import Cursor, EnvironmentId, Limit, Offset, ProjectId
from envhub.services import (
    commands,
    environment_requests,
    environment_views,
    inspection,
    listing,
    logs,
    ports,
    usage,
    waiting,
)
from envhub.services.environment_listing import filters_from_query
from envhub.services.environment_requests import StartedJob
from envhub.services.environment_views import (
    DevcontainerPort,
    EnvironmentEvents,
    EnvironmentRow,
    EnvironmentStatus,
    ListingRow,
)
from envhub.services.inspection import WorkloadsView
from envhub.services.logs import LogFilter, LogPage
from envhub.services.sleep_views import IdleView
from envhub.services.units import read_only, unit_of_work
from envhub.services.usage import UsageView
from envhub.services.waiting import WaitResult

PhaseName = Literal[
    "pending", "provisioning", "ready", "updating", "sleeping", "failed", "deleting", "deleted"
]
# What an agent's context can hold: output beyond this is cut (and says so).
MAX_OUTPUT = 1024 * 1024
MAX_COMMAND_SECONDS = 600
MAX_LOG_LINES = 2000


class EnvironmentList(TypedDict):
    environments: list[EnvironmentRow]
    next_cursor: str  # pass back as ``cursor`` for the next page; "" on the last one


class FoundEnvironments(TypedDict):
    environments: list[ListingRow]
    next_cursor: str  # pass back as ``cursor`` for the next page; "" on the last one
    total: int  # matching the filters, across all pages


class PublicUrl(TypedDict):
    url: str  # "" until the environment has one
    serving: bool  # it answers there now (phase ready)
    phase: str
    # Its devcontainer's forwarded ports, each with its label and its own URL ("" when it has none).
    ports: list[DevcontainerPort]


class CommandOutput(TypedDict):
    exit_code: int | None  # None when it was still running at its timeout
    output: str  # stdout and stderr merged, as UTF-8 (undecodable bytes replaced)
    output_bytes: int
    timed_out: bool
    truncated: bool  # it wrote more than max_output_bytes and was ended there


def list_environments(
    actor: Principal,
    project_id: ProjectId,
    phase: Annotated[
        PhaseName | None, Field(description="Only this phase (default: all live; deleted only when asked).")
    ] = None,
    kind: Literal["development", "deployment"] | None = None,
    trigger: Literal["manual", "agent", "pull_request", "push"] | None = None,
    search: Annotated[str, Field(max_length=63, description="Part of the environment's name.")] = "",
    cursor: Cursor = "",
    limit: Limit = 20,
) -> EnvironmentList:
    """List a project's environments, newest first, optionally filtered."""
    with read_only() as session:
        page = listing.environment_page(
            session=session,
            actor=actor,
            project_id=project_id,
            cursor=cursor or None,
            limit=limit,
            phase=Phase(phase) if phase else None,
            kind=EnvironmentKind(kind) if kind else None,
            trigger=Trigger(trigger) if trigger else None,
            search=search,
        )
    return EnvironmentList(environments=page.items, next_cursor=page.next_cursor or "")


def find_environments(
    actor: Principal,
    project_id: Annotated[int | None, Field(ge=1, description="Only this project's.")] = None,
    team_id: Annotated[int | None, Field(ge=1, description="Only this team's projects'.")] = None,
    phase: PhaseName | None = None,
    kind: Literal["development", "deployment"] | None = None,
    trigger: Literal["manual", "agent", "pull_request", "push"] | None = None,
    creator: Annotated[str | None, Field(max_length=100, description="A username.")] = None,
    search: Annotated[
        str, Field(max_length=200, description='Part of a name; "project/env" narrows both.')
    ] = "",
    cursor: Cursor = "",
    limit: Limit = 20,
) -> FoundEnvironments:
    """Every environment you can see in every project and team, newest first (deleted: phase deleted)."""
    query = {
        "project": project_id,
        "team": team_id,
        "phase": phase,
        "kind": kind,
        "trigger": trigger,
        "creator": creator,
        "q": search,
    }
    filters = filters_from_query({key: str(value) for key, value in query.items() if value not in (None, "")})
    with read_only() as session:
        listing = environment_views.visible_environments(
            session=session, actor=actor, filters=filters, cursor=cursor or None, limit=limit, facets=False
        )
    return FoundEnvironments(
        environments=listing["rows"], next_cursor=listing["next_cursor"], total=listing["total"]
    )


def get_environment(actor: Principal, environment_id: EnvironmentId) -> EnvironmentStatus:
    """Get an environment: phase, URL, spec, its latest job with its steps, and what you may do to it."""
    with read_only() as session:
        return environment_views.environment_status(
            session=session, actor=actor, environment_id=environment_id
        )


def get_events(
    actor: Principal, environment_id: EnvironmentId, offset: Offset = 0, limit: Limit = 20
) -> EnvironmentEvents:
    """What happened to an environment (created, phase changes, redeploys, commands, shells), newest first."""
    with read_only() as session:
        return environment_views.environment_events(
            session=session, actor=actor, environment_id=environment_id, offset=offset, limit=limit
        )


def create_environment(
    actor: Principal,
    project_id: ProjectId,
    name: Annotated[
        str | None, Field(max_length=63, description="DNS-safe name; default: a generated one.")
    ] = None,
    kind: Annotated[Literal["development", "deployment"], Field()] = "development",
    ref: Annotated[
        str | None, Field(max_length=255, description="Git ref to deploy (default: the project's).")
    ] = None,
    command: Annotated[
        str | None,
        Field(max_length=4000, description="Command serving HTTP on $PORT (default: the project's)."),
    ] = None,
    env: Annotated[
        dict[str, str], Field(max_length=200, description="Environment variables on top of the project's.")
    ] = {},  # noqa: B006 - the SDK copies defaults into each call's arguments model
    idempotency_key: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=255,
            description="Send the same key again (with the same arguments) to get the first answer, "
            "not a second environment.",
        ),
    ] = None,
) -> StartedJob:
    """Create an environment in a project from its defaults; it is recorded as made by an agent.

    Provisioning runs in the background (job_id): call wait_until_ready next.
    """
    overrides = {"ref": ref, "command": command, "env": env}
    with unit_of_work() as session:
        return environment_requests.create_environment_once(
            session=session,
            actor=actor,
            queue=ports.queue(),
            project_id=project_id,
            name=name,
            kind=kind,
            overrides=overrides,
            trigger=Trigger.agent,
            idempotency_key=idempotency_key,
            request={"name": name, "kind": kind, **overrides},
        )


def update_environment(
    actor: Principal,
    environment_id: EnvironmentId,
    ref: Annotated[str | None, Field(max_length=255, description="Git ref to deploy.")] = None,
    command: Annotated[
        str | None, Field(min_length=1, max_length=4000, description="Command serving HTTP on $PORT.")
    ] = None,
    env: Annotated[
        dict[str, str], Field(max_length=200, description="Environment variables to add or change.")
    ] = {},  # noqa: B006 - the SDK copies defaults into each call's arguments model
) -> StartedJob:
    """Change an environment's ref, command or variables (those left out stay); a job redeploys it."""
    changes = {"ref": ref, "command": command, "env": env}
    with unit_of_work() as session:
        return environment_requests.update(
            session=session,
            actor=actor,
            queue=ports.queue(),
            environment_id=environment_id,
            changes={key: value for key, value in changes.items() if value is not None},
        )


def redeploy_environment(actor: Principal, environment_id: EnvironmentId) -> StartedJob:
    """Redeploy an environment (fetch its ref again, restart it); runs in the background."""
    with unit_of_work() as session:
        return environment_requests.redeploy(
            session=session, actor=actor, queue=ports.queue(), environment_id=environment_id
        )


def sleep_environment(actor: Principal, environment_id: EnvironmentId) -> StartedJob:
    """Put a development environment to sleep now: its processes stop, its workspace stays.

    A visit to its URL, a command in it or wake_environment wakes it.
    """
    with unit_of_work() as session:
        return environment_requests.sleep(
            session=session, actor=actor, queue=ports.queue(), environment_id=environment_id
        )


def wake_environment(actor: Principal, environment_id: EnvironmentId) -> StartedJob:
    """Wake a sleeping environment; it starts again from its workspace (wait_until_ready to know when)."""
    with unit_of_work() as session:
        return environment_requests.wake(
            session=session, actor=actor, queue=ports.queue(), environment_id=environment_id
        )


def pin_environment(
    actor: Principal,
    environment_id: EnvironmentId,
    pinned: Annotated[bool, Field(description="True pins it; false unpins it.")] = True,
) -> IdleView:
    """Pin an environment (it neither sleeps when idle nor expires), or unpin it with pinned=false."""
    with unit_of_work() as session:
        return environment_requests.pin(
            session=session, actor=actor, environment_id=environment_id, pinned=pinned
        )


def delete_environment(
    actor: Principal,
    environment_id: EnvironmentId,
    confirm: Annotated[
        str | None,
        Field(
            max_length=63,
            description="The environment's name: a deployment environment (staging, production) is "
            "deleted only with it, and only by a team owner.",
        ),
    ] = None,
) -> StartedJob:
    """Delete an environment and everything it runs; runs in the background (phase deleting, then deleted)."""
    with unit_of_work() as session:
        return environment_requests.delete(
            session=session, actor=actor, queue=ports.queue(), environment_id=environment_id, confirm=confirm
        )


def wait_until_ready(
    actor: Principal,
    environment_id: EnvironmentId,
    timeout_seconds: Annotated[
        float, Field(gt=0, le=waiting.MAX_WAIT, description="How long to wait at most.")
    ] = 300,
    phase: Annotated[
        PhaseName, Field(description="The phase to wait for: ready, or deleted after delete_environment.")
    ] = "ready",
) -> WaitResult:
    """Wait until an environment is ready (or in phase), settles elsewhere (failed), or time is up."""
    return waiting.wait_for_environment(
        actor=actor, environment_id=environment_id, phase=Phase(phase), timeout=timeout_seconds
    )


def get_public_url(actor: Principal, environment_id: EnvironmentId) -> PublicUrl:
    """The environment's public URL, whether it serves there now, and each forwarded port's URL."""
    with read_only() as session:
        detail = environment_views.environment_summary(
            session=session, actor=actor, environment_id=environment_id
        )
    return PublicUrl(
        url=detail["url"],
        serving=detail["phase"] == Phase.ready.value,
        phase=detail["phase"],
        ports=detail["devcontainer_ports"],
    )


def get_logs(
    actor: Principal,
    environment_id: EnvironmentId,
    tail: Annotated[int, Field(ge=1, le=MAX_LOG_LINES, description="How many of the last lines.")] = 200,
    container: Annotated[
        str | None, Field(max_length=63, description="A service's container (default: the main one).")
    ] = None,
    previous: Annotated[
        bool,
        Field(
            description="The container's instance before its last restart (what it printed before a crash)."
        ),
    ] = False,
    search: Annotated[
        str, Field(max_length=MAX_SEARCH, description="Only lines containing this (see regex, ignore_case).")
    ] = "",
    regex: bool = False,
    ignore_case: bool = False,
    since: Annotated[
        str, Field(max_length=40, description="From then: 2026-12-07T17:00:00Z, or 15m, 2h back.")
    ] = "",
    until: Annotated[str, Field(max_length=40, description="Until then, as since.")] = "",
    timestamps: Annotated[bool, Field(description="Start each line with the time it was printed.")] = False,
) -> LogPage:
    """The last lines the environment's processes printed, searched or cut to a time range.

    A search scans up to 50,000 recent lines on the server; ``capped`` says whether older
    ones were left unread or more matched than ``tail``. A time range needs a runtime that
    records each line's time (both do; a local tree started before envhub noted times answers
    ``not_supported``).
    """
    chosen = LogFilter(
        previous=previous,
        search=search,
        regex=regex,
        ignore_case=ignore_case,
        since=since,
        until=until,
        timestamps=timestamps,
    )
    with read_only() as session:
        return logs.environment_logs(
            session=session,
            actor=actor,
            runtime=ports.runtime(),
            environment_id=environment_id,
            tail=tail,
            container=container,
            chosen=chosen,
        )


def get_usage(actor: Principal, environment_id: EnvironmentId) -> UsageView:
    """CPU (millicores) and memory per container now, with the readings of the last minutes.

    ``available`` is false, with a ``note`` saying why, when the runtime cannot measure (a
    cluster without the metrics API): never zeros.
    """
    with read_only() as session:
        return usage.environment_usage(
            session=session, actor=actor, runtime=ports.runtime(), environment_id=environment_id
        )


def get_workloads(actor: Principal, environment_id: EnvironmentId) -> WorkloadsView:
    """What runs inside the environment: pods or processes, their containers and restarts, recent events."""
    with read_only() as session:
        return inspection.environment_workloads(
            session=session, actor=actor, runtime=ports.runtime(), environment_id=environment_id
        )


def run_command(
    actor: Principal,
    environment_id: EnvironmentId,
    command: Annotated[
        list[Annotated[str, Field(max_length=4096)]],
        Field(min_length=1, max_length=256, description='argv, no shell: ["sh", "-c", "..."] for one.'),
    ],
    timeout_seconds: Annotated[float, Field(gt=0, le=MAX_COMMAND_SECONDS)] = 60,
    max_output_bytes: Annotated[int, Field(ge=1, le=MAX_OUTPUT)] = 64 * 1024,
    container: Annotated[str | None, Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")] = None,
) -> CommandOutput:
    """Run a command inside the environment (no terminal) and return its exit code and output.

    A command still running at timeout_seconds, or past max_output_bytes of
    output, is ended. Needs the shell right, like a terminal.
    """
    if any("\x00" in arg for arg in command):
        raise ValidationFailed("arguments cannot contain NUL characters", details={"field": "command"})
    with unit_of_work() as session:
        result = commands.run_command(
            session=session,
            actor=actor,
            runtime=ports.runtime(),
            environment_id=environment_id,
            command=command,
            timeout=timeout_seconds,
            cap=max_output_bytes,
            container=container,
        )
    end = result.end
    return CommandOutput(
        exit_code=end.exit_code,
        output=result.output.decode("utf-8", "replace"),
        output_bytes=end.output_bytes,
        timed_out=end.timed_out,
        truncated=end.truncated,
    )
