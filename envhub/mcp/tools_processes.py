"""Tools for background processes in an environment: start, list, read output, stop.

The same use cases as REST's routes (``api/v1/processes.py``); start and stop
are audited there (``services/background.py``).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from envhub.domain.principals import Principal
from envhub.mcp.schemas import EnvironmentId
from envhub.services import background, ports
from envhub.services.background import ProcessList, ProcessOutput, ProcessView
from envhub.services.units import unit_of_work

ProcessId = Annotated[int, Field(ge=1, le=2**31 - 1, description="From start_process or list_processes.")]
# What an agent's context can hold in one answer.
MAX_BYTES = 1024 * 1024


def start_process(
    actor: Principal,
    environment_id: EnvironmentId,
    name: Annotated[
        str, Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", description="e.g. dev-server")
    ],
    command: Annotated[
        list[Annotated[str, Field(max_length=4096)]] | None,
        Field(min_length=1, max_length=256, description="argv, no shell; or give shell instead."),
    ] = None,
    shell: Annotated[
        str | None, Field(min_length=1, max_length=16384, description="A line for sh -c.")
    ] = None,
) -> ProcessView:
    """Start a process in the workspace that keeps running after this call (a dev server, a watcher).

    Read what it prints with read_process_output, end it with stop_process.
    """
    with unit_of_work() as session:
        return background.start_process(
            session=session,
            actor=actor,
            runtime=ports.runtime(),
            environment_id=environment_id,
            name=name,
            command=command,
            shell=shell,
        )


def list_processes(actor: Principal, environment_id: EnvironmentId) -> ProcessList:
    """The environment's background processes, newest first: running, or how they ended."""
    with unit_of_work() as session:
        return background.list_processes(
            session=session, actor=actor, runtime=ports.runtime(), environment_id=environment_id
        )


def read_process_output(
    actor: Principal,
    environment_id: EnvironmentId,
    process_id: ProcessId,
    offset: Annotated[int, Field(ge=0)] = 0,
    max_bytes: Annotated[int, Field(ge=1, le=MAX_BYTES)] = 64 * 1024,
) -> ProcessOutput:
    """What a background process printed (stdout and stderr), from byte offset; pass next_offset to go on.

    The oldest output is dropped past a size limit: an answer whose offset is
    beyond the one asked for skipped dropped bytes (``dropped`` says how many
    are gone in all)."""
    with unit_of_work() as session:
        return background.process_output(
            session=session,
            actor=actor,
            runtime=ports.runtime(),
            environment_id=environment_id,
            process_id=process_id,
            offset=offset,
            limit=max_bytes,
        )


def stop_process(
    actor: Principal,
    environment_id: EnvironmentId,
    process_id: ProcessId,
    grace_seconds: Annotated[float, Field(ge=0, le=background.MAX_GRACE)] = 5,
) -> ProcessView:
    """Stop a background process: SIGTERM, then SIGKILL after grace_seconds. An ended one is left as is."""
    with unit_of_work() as session:
        return background.stop_process(
            session=session,
            actor=actor,
            runtime=ports.runtime(),
            environment_id=environment_id,
            process_id=process_id,
            grace_seconds=grace_seconds,
        )
