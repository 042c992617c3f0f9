"""Background processes of an environment: start, list, output, stop (``services/background.py``).

A process started here outlives the request (a dev server, a watcher); its
output is kept and read by byte offset, also after it has ended.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from envhub.api.v1.models import NO_NUL, Caller, Id, answers, model_of
from envhub.models.db import session_scope
from envhub.services import background, ports
from envhub.services.background import ProcessList, ProcessOutput, ProcessView

router = APIRouter(prefix="/api/v1", tags=["environments"])

ProcessModel = model_of(ProcessView)
ProcessListModel = model_of(ProcessList)
ProcessOutputModel = model_of(ProcessOutput)
ProcessId = Annotated[int, Path(ge=1, le=2**31 - 1)]


class StartIn(BaseModel):
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    command: list[Annotated[str, Field(max_length=4096, pattern=NO_NUL)]] | None = Field(
        default=None, min_length=1, max_length=256, description="argv, no shell; or give shell instead."
    )
    shell: str | None = Field(default=None, min_length=1, max_length=16384, pattern=NO_NUL)


class StopIn(BaseModel):
    grace_seconds: float = Field(default=5, ge=0, le=background.MAX_GRACE)


@router.post(
    "/environments/{environment_id}/processes",
    response_model=ProcessModel,
    responses=answers(404, 409, 503),
    summary="Start a background process in the workspace (it outlives the request)",
)
def start_process(environment_id: Id, body: StartIn, actor: Caller) -> ProcessView:
    with session_scope() as session:
        return background.start_process(
            session=session,
            actor=actor,
            runtime=ports.runtime(),
            environment_id=environment_id,
            name=body.name,
            command=body.command,
            shell=body.shell,
        )


@router.get(
    "/environments/{environment_id}/processes",
    response_model=ProcessListModel,
    responses=answers(404, 409),
    summary="An environment's background processes, newest first",
)
def list_processes(environment_id: Id, actor: Caller) -> ProcessList:
    with session_scope() as session:
        return background.list_processes(
            session=session, actor=actor, runtime=ports.runtime(), environment_id=environment_id
        )


@router.get(
    "/environments/{environment_id}/processes/{process_id}/output",
    response_model=ProcessOutputModel,
    responses=answers(404, 409),
    summary="What a background process printed, from a byte offset",
)
def process_output(
    environment_id: Id,
    process_id: ProcessId,
    actor: Caller,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
    max_bytes: Annotated[int, Query(ge=1, le=background.MAX_OUTPUT)] = 64 * 1024,
) -> ProcessOutput:
    with session_scope() as session:
        return background.process_output(
            session=session,
            actor=actor,
            runtime=ports.runtime(),
            environment_id=environment_id,
            process_id=process_id,
            offset=offset,
            limit=max_bytes,
        )


@router.post(
    "/environments/{environment_id}/processes/{process_id}/stop",
    response_model=ProcessModel,
    responses=answers(404, 409),
    summary="Stop a background process: SIGTERM, then SIGKILL after grace_seconds",
)
def stop_process(
    environment_id: Id, process_id: ProcessId, actor: Caller, body: StopIn | None = None
) -> ProcessView:
    with session_scope() as session:
        return background.stop_process(
            session=session,
            actor=actor,
            runtime=ports.runtime(),
            environment_id=environment_id,
            process_id=process_id,
            grace_seconds=(body or StopIn()).grace_seconds,
        )
