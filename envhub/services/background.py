"""Background processes in an environment: start one that outlives the call, list, read its output, stop.

For what an agent keeps running while it works (a dev server, a watcher, a
long build). Each process is a row (``models/background.py``), envhub's record
of it, run by the runtime under the row's id (``runtime.base.BackgroundHost``);
states are refreshed from the runtime whenever they are looked at, so an
envhub restart loses nothing. The same right as a shell; starting and
stopping are audited with the command line, never the output.
"""

from __future__ import annotations

import re
import shlex
from typing import Literal, TypedDict

from sqlmodel import Session, col, select

from envhub.domain.phases import Phase
from envhub.domain.principals import Principal
from envhub.errors import Conflict, InvalidTransition, NotFound, NotReady, Unsupported, ValidationFailed
from envhub.models import BackgroundProcess
from envhub.models.base import utcnow
from envhub.runtime.base import BackgroundHost, Runtime
from envhub.services.commands import shell_access
from envhub.services.common import AuditTarget, audited

MAX_RUNNING = 20
MAX_OUTPUT = 16 * 1024 * 1024
MAX_GRACE = 60.0
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")

State = Literal["running", "exited", "stopped"]


class ProcessView(TypedDict):
    id: int
    name: str
    command: str  # the command line, shell-quoted
    state: State
    exit_code: int | None  # None while running, or when nobody saw how it ended
    started_by: str
    started_at: str  # ISO 8601
    ended_at: str  # ISO 8601; "" while running


class ProcessList(TypedDict):
    processes: list[ProcessView]  # newest first


class ProcessOutput(TypedDict):
    id: int
    output: str  # stdout and stderr merged, as UTF-8 (undecodable bytes replaced)
    offset: int  # where output begins: the offset asked for, or the oldest kept byte when that was dropped
    next_offset: int  # pass back as offset to read on
    size: int  # bytes of output so far, dropped ones included
    # The oldest output is dropped past the runtime's limit (ENVHUB_BACKGROUND_OUTPUT_LIMIT_MB):
    # offsets below this are gone. Offsets always count from the first byte the process printed.
    dropped: int
    state: State
    exit_code: int | None


def start_process(
    *,
    session: Session,
    actor: Principal,
    runtime: Runtime,
    environment_id: int,
    name: str,
    command: list[str] | None = None,
    shell: str | None = None,
) -> ProcessView:
    """Start ``command`` (argv) or ``shell`` (a line for ``sh -c``) under ``name``.

    It runs in the workspace, beside the app, until it ends or is stopped.
    """
    if (command is None) == (shell is None) or command == [] or shell == "":
        raise ValidationFailed(
            "give either command (argv) or shell (a command line)", details={"field": "command"}
        )
    argv = command if command is not None else ["sh", "-c", shell or ""]
    if any("\x00" in arg for arg in argv):
        raise ValidationFailed("arguments cannot contain NUL characters", details={"field": "command"})
    if not _NAME.fullmatch(name):
        raise ValidationFailed(
            "a process name is 1-63 lower-case letters, digits and '-'", details={"field": "name"}
        )
    host = _host(runtime)
    target = AuditTarget("environment", id=environment_id)
    with audited(session, actor, "environment.process_start", target):
        target.details = {"name": name, "command": shlex.join(argv)[:500]}
        environment = shell_access(session=session, actor=actor, environment_id=environment_id, target=target)
        running = [row for row in _refreshed(session, host, environment_id) if row.state == "running"]
        if any(row.name == name for row in running):
            raise Conflict(
                f"a process named {name} is already running here",
                hint="Stop it first, or pick another name.",
            )
        if len(running) >= MAX_RUNNING:
            raise Conflict(
                f"{MAX_RUNNING} processes already run in this environment",
                hint="Stop one you no longer need.",
            )
        row = BackgroundProcess(environment_id=environment_id, name=name, command=argv, started_by=actor.name)
        session.add(row)
        session.flush()
        assert row.id is not None
        target.details["process_id"] = row.id
        try:
            host.start_process(environment_id, str(row.id), argv)
        except NotReady as exc:
            if environment.phase in (Phase.ready, Phase.updating):
                raise  # the runtime will catch up: retry (503)
            raise InvalidTransition(
                f"cannot start a process in an environment that is {environment.phase.value} ({exc.message})",
                hint="Wait until it is ready (GET /api/v1/environments/{id}/wait), then start it.",
            ) from exc
    return _view(row)


def list_processes(
    *, session: Session, actor: Principal, runtime: Runtime, environment_id: int
) -> ProcessList:
    """The environment's background processes, running or ended, newest first."""
    host = _host(runtime)
    shell_access(
        session=session, actor=actor, environment_id=environment_id, target=AuditTarget("environment")
    )
    rows = _refreshed(session, host, environment_id)
    session.commit()
    return ProcessList(processes=[_view(row) for row in rows])


def process_output(
    *,
    session: Session,
    actor: Principal,
    runtime: Runtime,
    environment_id: int,
    process_id: int,
    offset: int = 0,
    limit: int = 64 * 1024,
) -> ProcessOutput:
    """At most ``limit`` bytes of what the process printed, from byte ``offset``; also after it ended.

    When ``offset`` was dropped (the output passed the runtime's limit), the
    answer begins at the oldest byte kept: its ``offset`` says where."""
    if offset < 0 or not 0 < limit <= MAX_OUTPUT:
        raise ValidationFailed(
            f"offset is at least 0, limit between 1 and {MAX_OUTPUT}", details={"field": "limit"}
        )
    host = _host(runtime)
    shell_access(
        session=session, actor=actor, environment_id=environment_id, target=AuditTarget("environment")
    )
    row = _row(session, environment_id, process_id)
    chunk = host.process_output(environment_id, str(process_id), offset, limit)
    _refresh(host, row)
    session.commit()
    return ProcessOutput(
        id=process_id,
        output=chunk.data.decode("utf-8", "replace"),
        offset=chunk.offset,
        next_offset=chunk.offset + len(chunk.data),
        size=chunk.size,
        dropped=chunk.dropped,
        state=row.state,  # type: ignore[typeddict-item]
        exit_code=row.exit_code,
    )


def stop_process(
    *,
    session: Session,
    actor: Principal,
    runtime: Runtime,
    environment_id: int,
    process_id: int,
    grace_seconds: float = 5.0,
) -> ProcessView:
    """SIGTERM the process (and what it started), SIGKILL it after ``grace_seconds``.

    An ended process stays as it is (and nothing is recorded).
    """
    if not 0 <= grace_seconds <= MAX_GRACE:
        raise ValidationFailed(
            f"grace_seconds is between 0 and {MAX_GRACE:g}", details={"field": "grace_seconds"}
        )
    host = _host(runtime)
    target = AuditTarget("environment", id=environment_id)
    with audited(session, actor, "environment.process_stop", target):
        target.details = {"process_id": process_id}
        shell_access(session=session, actor=actor, environment_id=environment_id, target=target)
        row = _row(session, environment_id, process_id)
        target.details["name"] = row.name
        _refresh(host, row)
        if row.state != "running":
            target.record = False  # nothing to stop: asked twice, or it had ended
            return _view(row)
        host.stop_process(environment_id, str(process_id), grace_seconds)
        _refresh(host, row)
        if row.state == "exited":
            row.state = "stopped"
        target.details["exit_code"] = row.exit_code
    return _view(row)


def _host(runtime: Runtime) -> BackgroundHost:
    if not isinstance(runtime, BackgroundHost):
        raise Unsupported(
            "this runtime does not run background processes yet",
            hint="Use run_command for work that ends, or `nohup CMD &` inside the environment's shell.",
        )
    return runtime


def _row(session: Session, environment_id: int, process_id: int) -> BackgroundProcess:
    row = session.get(BackgroundProcess, process_id)
    if row is None or row.environment_id != environment_id:
        raise NotFound(f"no background process {process_id} in environment {environment_id}")
    return row


def _refreshed(session: Session, host: BackgroundHost, environment_id: int) -> list[BackgroundProcess]:
    rows = list(
        session.exec(
            select(BackgroundProcess)
            .where(BackgroundProcess.environment_id == environment_id)
            .order_by(col(BackgroundProcess.id).desc())
        )
    )
    for row in rows:
        _refresh(host, row)
    return rows


def _refresh(host: BackgroundHost, row: BackgroundProcess) -> None:
    """Bring a running row up to what the runtime says."""
    if row.state != "running":
        return
    try:
        found = host.process_state(row.environment_id, str(row.id))
    except (NotFound, NotReady):
        found = None  # the environment's files are gone (rebuilt, or deleted)
    if found is not None and found.running:
        return
    row.state = "exited"
    row.exit_code = found.exit_code if found is not None else None
    row.ended_at = utcnow()


def _view(row: BackgroundProcess) -> ProcessView:
    assert row.id is not None
    return ProcessView(
        id=row.id,
        name=row.name,
        command=shlex.join(row.command),
        state=row.state,  # type: ignore[typeddict-item]
        exit_code=row.exit_code,
        started_by=row.started_by,
        started_at=row.started_at.isoformat(),
        ended_at=row.ended_at.isoformat() if row.ended_at else "",
    )
