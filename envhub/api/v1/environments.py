"""``/api/v1`` environments: create, list, read, redeploy, delete, status, wait, events (logs: logs.py).

Creating, redeploying and deleting only record intent; a job does the work.
They answer ``202 Accepted`` with the job's id, the environment as it is now,
and a ``wait_url`` that holds the caller (up to 30 s per call) until the
environment settles. A create with an ``Idempotency-Key`` header makes one
environment however often it is sent (``services/idempotency.py``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from pydantic import BaseModel, ConfigDict, Field

from envhub.api.v1.models import (
    ENV_NAME,
    NO_NUL,
    Accepted,
    Caller,
    Cursor,
    CursorPage,
    Id,
    Label,
    Limit,
    Text,
    answers,
    model_of,
)
from envhub.domain.phases import Phase
from envhub.domain.specs import EnvironmentKind, Trigger
from envhub.services import environment_requests, environment_views, inspection, listing, ports, waiting
from envhub.services.environment_listing import SEARCH_MAX, filters_from_query
from envhub.services.environment_requests import StartedJob
from envhub.services.environment_views import (
    EnvironmentDetail,
    EnvironmentEvents,
    EnvironmentRow,
    EnvironmentStatus,
    ListingRow,
)
from envhub.services.inspection import WorkloadsView
from envhub.services.sleep_views import IdleView
from envhub.services.units import read_only, unit_of_work
from envhub.services.waiting import WaitResult

router = APIRouter(prefix="/api/v1", tags=["environments"])

EnvironmentRowModel = model_of(EnvironmentRow)
EnvironmentModel = model_of(EnvironmentDetail)
ListingRowModel = model_of(ListingRow)
HistoryModel = model_of(EnvironmentEvents)
StatusModel = model_of(EnvironmentStatus)
IdleModel = model_of(IdleView)
WaitModel = model_of(WaitResult)
WorkloadsModel = model_of(WorkloadsView)


class EnvironmentIn(BaseModel):
    """A new environment: the project's defaults, with these on top."""

    model_config = ConfigDict(extra="forbid")

    name: Label | None = Field(default=None, description="Generated when left out.")
    kind: EnvironmentKind = EnvironmentKind.development
    ref: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9._/-]{1,200}$", description="Git ref to check out."
    )
    command: Text | None = Field(default=None, max_length=4000)
    env: dict[
        Annotated[str, Field(max_length=200, pattern=ENV_NAME)],
        Annotated[str, Field(max_length=32_768, pattern=NO_NUL)],
    ] = Field(default_factory=dict, max_length=200)


def accepted(started: StartedJob) -> dict[str, Any]:
    environment_id = started["environment"]["id"]
    return {
        **started,
        "status_url": f"/api/v1/environments/{environment_id}/status",
        "wait_url": f"/api/v1/environments/{environment_id}/wait",
    }


@router.post(
    "/projects/{project_id}/environments",
    status_code=202,
    response_model=Accepted,
    responses=answers(404, 409),
    summary="Create an environment (a job provisions it)",
)
def create_environment(
    project_id: Id,
    body: EnvironmentIn,
    actor: Caller,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            max_length=255,
            description="Send the same key again (with the same body) to get the first answer, "
            "not a second environment.",
        ),
    ] = None,
) -> dict[str, Any]:
    with unit_of_work() as session:
        started = environment_requests.create_environment_once(
            session=session,
            actor=actor,
            queue=ports.queue(),
            project_id=project_id,
            name=body.name,
            kind=body.kind.value,
            overrides={"ref": body.ref, "command": body.command, "env": body.env},
            idempotency_key=idempotency_key,
            request=body.model_dump(mode="json"),
        )
    return accepted(started)


@router.get(
    "/projects/{project_id}/environments",
    response_model=CursorPage[EnvironmentRowModel],  # type: ignore[valid-type]
    responses=answers(404),
    summary="List a project's environments, newest first",
)
def list_environments(
    project_id: Id,
    actor: Caller,
    cursor: Cursor = None,
    limit: Limit = 20,
    phase: Annotated[
        Phase | None, Query(description="Only this phase (deleted ones only when asked).")
    ] = None,
    kind: Annotated[EnvironmentKind | None, Query()] = None,
    trigger: Annotated[Trigger | None, Query(description="What made it.")] = None,
    search: Annotated[
        str, Query(max_length=63, pattern=NO_NUL, description="Part of the environment's name.")
    ] = "",
) -> dict[str, Any]:
    with read_only() as session:
        page = listing.environment_page(
            session=session,
            actor=actor,
            project_id=project_id,
            cursor=cursor,
            limit=limit,
            phase=phase,
            kind=kind,
            trigger=trigger,
            search=search,
        )
    return {"items": page.items, "next_cursor": page.next_cursor}


class VisiblePage(BaseModel):
    """One page of every environment you can see. Pass ``next_cursor`` back as ``cursor``; null at the end."""

    items: list[ListingRowModel]  # type: ignore[valid-type]
    next_cursor: str | None
    total: int = Field(description="How many match the filters, across all pages.")


@router.get(
    "/environments",
    response_model=VisiblePage,
    responses=answers(),
    summary="Every environment you can see, in every project and team, newest first",
)
def list_visible_environments(
    actor: Caller,
    cursor: Cursor = None,
    limit: Limit = 20,
    project: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="Only this project's.")] = None,
    team: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="Only this team's projects'.")] = None,
    phase: Annotated[
        Phase | None, Query(description="Only this phase (deleted ones only when asked).")
    ] = None,
    kind: Annotated[EnvironmentKind | None, Query()] = None,
    trigger: Annotated[Trigger | None, Query(description="What made it.")] = None,
    creator: Annotated[str | None, Query(max_length=100, pattern=NO_NUL, description="A username.")] = None,
    q: Annotated[
        str,
        Query(
            max_length=SEARCH_MAX, pattern=NO_NUL, description='Part of a name; "project/env" narrows both.'
        ),
    ] = "",
    deleted: Annotated[bool, Query(description="Include deleted environments.")] = False,
) -> dict[str, Any]:
    given = {"project": project, "team": team, "phase": phase, "kind": kind, "trigger": trigger}
    query = {key: str(value) for key, value in given.items() if value is not None}
    filters = filters_from_query({**query, "creator": creator or "", "q": q, "deleted": str(deleted)})
    with read_only() as session:
        listing = environment_views.visible_environments(
            session=session, actor=actor, filters=filters, cursor=cursor, limit=limit, facets=False
        )
    return {
        "items": listing["rows"],
        "next_cursor": listing["next_cursor"] or None,
        "total": listing["total"],
    }


@router.get(
    "/environments/{environment_id}",
    response_model=EnvironmentModel,
    responses=answers(404),
    summary="Get an environment",
)
def get_environment(environment_id: Id, actor: Caller) -> EnvironmentDetail:
    with read_only() as session:
        return environment_views.environment_summary(
            session=session, actor=actor, environment_id=environment_id
        )


class EnvironmentChanges(BaseModel):
    """What to change; the environment is redeployed with it."""

    model_config = ConfigDict(extra="forbid")

    ref: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._/-]{1,200}$", description="Git ref.")
    command: Text | None = Field(default=None, min_length=1, max_length=4000)
    env: dict[
        Annotated[str, Field(max_length=200, pattern=ENV_NAME)],
        Annotated[str, Field(max_length=32_768, pattern=NO_NUL)],
    ] = Field(default_factory=dict, max_length=200, description="Variables to add or change.")


@router.patch(
    "/environments/{environment_id}",
    status_code=202,
    response_model=Accepted,
    responses=answers(404, 409),
    summary="Change an environment's ref, command or variables (a job redeploys it with them)",
)
def update_environment(environment_id: Id, body: EnvironmentChanges, actor: Caller) -> dict[str, Any]:
    with unit_of_work() as session:
        started = environment_requests.update(
            session=session,
            actor=actor,
            queue=ports.queue(),
            environment_id=environment_id,
            changes=body.model_dump(exclude_none=True),
        )
    return accepted(started)


@router.post(
    "/environments/{environment_id}/redeploy",
    status_code=202,
    response_model=Accepted,
    responses=answers(404, 409),
    summary="Redeploy an environment (a job does it)",
)
def redeploy_environment(environment_id: Id, actor: Caller) -> dict[str, Any]:
    with unit_of_work() as session:
        started = environment_requests.redeploy(
            session=session, actor=actor, queue=ports.queue(), environment_id=environment_id
        )
    return accepted(started)


@router.post(
    "/environments/{environment_id}/sleep",
    status_code=202,
    response_model=Accepted,
    responses=answers(404, 409),
    summary="Put a development environment to sleep now (its workspace is kept; a job stops it)",
)
def sleep_environment(environment_id: Id, actor: Caller) -> dict[str, Any]:
    with unit_of_work() as session:
        started = environment_requests.sleep(
            session=session, actor=actor, queue=ports.queue(), environment_id=environment_id
        )
    return accepted(started)


@router.post(
    "/environments/{environment_id}/wake",
    status_code=202,
    response_model=Accepted,
    responses=answers(404, 409),
    summary="Wake a sleeping environment (a job starts it again from its workspace)",
)
def wake_environment(environment_id: Id, actor: Caller) -> dict[str, Any]:
    with unit_of_work() as session:
        started = environment_requests.wake(
            session=session, actor=actor, queue=ports.queue(), environment_id=environment_id
        )
    return accepted(started)


@router.put(
    "/environments/{environment_id}/pin",
    response_model=IdleModel,
    responses=answers(404, 409),
    summary="Pin an environment: it neither sleeps when idle nor expires",
)
def pin_environment(environment_id: Id, actor: Caller) -> IdleView:
    with unit_of_work() as session:
        return environment_requests.pin(
            session=session, actor=actor, environment_id=environment_id, pinned=True
        )


@router.delete(
    "/environments/{environment_id}/pin",
    response_model=IdleModel,
    responses=answers(404, 409),
    summary="Unpin an environment: idle sleep and its TTL apply again, counted from now",
)
def unpin_environment(environment_id: Id, actor: Caller) -> IdleView:
    with unit_of_work() as session:
        return environment_requests.pin(
            session=session, actor=actor, environment_id=environment_id, pinned=False
        )


@router.delete(
    "/environments/{environment_id}",
    status_code=202,
    response_model=Accepted,
    responses=answers(404, 409),
    summary="Delete an environment (a job tears it down)",
)
def delete_environment(
    environment_id: Id,
    actor: Caller,
    confirm: Annotated[
        str | None,
        Query(
            max_length=63,
            description="A deployment environment's name: deleting one takes it (and an owner).",
        ),
    ] = None,
) -> dict[str, Any]:
    with unit_of_work() as session:
        started = environment_requests.delete(
            session=session, actor=actor, queue=ports.queue(), environment_id=environment_id, confirm=confirm
        )
    return accepted(started)


@router.get(
    "/environments/{environment_id}/status",
    response_model=StatusModel,
    responses=answers(404),
    summary="An environment's phase, conditions, latest job with its steps, and what you may do",
)
def environment_status(environment_id: Id, actor: Caller) -> EnvironmentStatus:
    with read_only() as session:
        return environment_views.environment_status(
            session=session, actor=actor, environment_id=environment_id
        )


@router.get(
    "/environments/{environment_id}/wait",
    response_model=WaitModel,
    responses=answers(404),
    summary="Wait (long poll, at most 30 s) until the environment reaches a phase or settles",
)
def wait_for_environment(
    environment_id: Id,
    actor: Caller,
    phase: Annotated[Phase, Query(description="The phase to wait for.")] = Phase.ready,
    timeout: Annotated[float, Query(ge=0, le=30, description="Seconds to wait at most.")] = 30,
) -> WaitResult:
    return waiting.wait_for_environment(
        actor=actor, environment_id=environment_id, phase=phase, timeout=timeout
    )


@router.get(
    "/environments/{environment_id}/events",
    response_model=WorkloadsModel,
    responses=answers(404),
    summary="What runs in the environment (pods, containers) and the runtime's recent events",
)
def environment_events(environment_id: Id, actor: Caller) -> WorkloadsView:
    with read_only() as session:
        return inspection.environment_workloads(
            session=session, actor=actor, runtime=ports.runtime(), environment_id=environment_id
        )


@router.get(
    "/environments/{environment_id}/history",
    response_model=HistoryModel,
    responses=answers(404),
    summary="What happened to the environment (its audit trail), newest first",
)
def environment_history(
    environment_id: Id,
    actor: Caller,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    limit: Limit = 20,
) -> EnvironmentEvents:
    with read_only() as session:
        return environment_views.environment_events(
            session=session, actor=actor, environment_id=environment_id, offset=offset, limit=limit
        )
