"""Running one command in an environment, without a terminal: ``envhub exec``, agents.

The same right as a shell (``environment.shell``): a command is what a person
would type there. Starting it is audited with the command line. The command
then runs under a deadline and an output cap (:func:`follow_output`), which
every face uses: the REST route (``api/v1/commands.py``) streams the pieces as
they come, MCP collects them into one answer (:func:`run_command`).
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Iterator
from dataclasses import dataclass

from sqlmodel import Session

from envhub.domain.phases import Phase
from envhub.domain.policy import Action
from envhub.domain.principals import Principal
from envhub.errors import InvalidTransition, NotReady
from envhub.models import Environment
from envhub.runtime.base import ExecSession, Runtime
from envhub.services import activity, ports, sleeping
from envhub.services.access import authorize_environment
from envhub.services.common import AuditTarget, audited
from envhub.services.environments import get_environment

_NOT_RUNNING = frozenset({Phase.deleting, Phase.deleted})
_SERVING = frozenset({Phase.ready, Phase.updating})
# How long one read waits before looking at the clock again.
READ_SLICE = 2.0


def start_command(
    *,
    session: Session,
    actor: Principal,
    runtime: Runtime,
    environment_id: int,
    command: list[str],
    container: str | None = None,
) -> ExecSession:
    """Start ``command`` (argv, no shell) in the environment, on pipes; the caller reads and ends it."""
    target = AuditTarget("environment", id=environment_id)
    with audited(session, actor, "environment.exec", target):
        started = open_exec(
            session=session,
            actor=actor,
            runtime=runtime,
            environment_id=environment_id,
            command=command,
            target=target,
            container=container,
        )
        target.details = {"command": shlex.join(command)[:500], "container": container or ""}
    return started


def shell_access(
    *, session: Session, actor: Principal, environment_id: int, target: AuditTarget
) -> Environment:
    """The environment, once ``actor`` holds the shell right on it and it is not going away.

    Names it in ``target``; the caller's audited block records the outcome.
    """
    environment = get_environment(session=session, actor=actor, environment_id=environment_id)
    project = authorize_environment(
        session, actor, environment, Action.environment_shell, what=f"environment {environment_id}"
    )
    target.name, target.team_id = f"{project.name}/{environment.name}", project.team_id
    if environment.phase in _NOT_RUNNING or environment.desired_state == "absent":
        raise InvalidTransition(f"cannot run a command in an environment that is {environment.phase.value}")
    activity.note(environment_id)
    sleeping.require_awake(session, actor, environment, ports.queue)
    return environment


def open_exec(
    *,
    session: Session,
    actor: Principal,
    runtime: Runtime,
    environment_id: int,
    command: list[str],
    target: AuditTarget,
    container: str | None = None,
) -> ExecSession:
    """Authorize the shell right and start ``command`` on pipes, inside the caller's audited block.

    The one way in for every use case that runs something in an environment
    (a command, the file operations of ``services/files.py``); it names the
    environment in ``target`` and leaves the audit record to the caller.
    """
    environment = shell_access(session=session, actor=actor, environment_id=environment_id, target=target)
    phase = environment.phase
    # Starting can take a while (a pod exec handshake): hold no transaction meanwhile.
    session.commit()
    try:
        return runtime.exec(environment_id, command, tty=False, container=container)
    except NotReady as exc:
        if phase in _SERVING:
            raise  # a serving environment's runtime will catch up: retry (503)
        # Not provisioned yet: the environment's state, not envhub's, is in the way.
        raise InvalidTransition(
            f"cannot run a command in an environment that is {phase.value} ({exc.message})",
            hint="Wait until it is ready (GET /api/v1/environments/{id}/wait), then run the command.",
        ) from exc


@dataclass(frozen=True, slots=True)
class CommandEnd:
    """How a command ended: ``exit_code`` is None when it was still running at the deadline."""

    exit_code: int | None
    timed_out: bool
    truncated: bool
    output_bytes: int


def follow_output(process: ExecSession, *, timeout: float, cap: int) -> Iterator[bytes | CommandEnd]:
    """The command's output as it comes (at most ``cap`` bytes), then how it ended.

    A command still running at ``timeout`` seconds, or past ``cap`` bytes of
    output, is ended; so is one whose reader stops early (closing the iterator).
    """
    deadline = time.monotonic() + timeout
    sent, code = 0, None
    timed_out = truncated = False
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            try:
                data = process.read(65536, timeout=min(left, READ_SLICE))
            except TimeoutError:
                continue
            if not data:
                break
            if len(data) > cap - sent:
                data, truncated = data[: cap - sent], True
            if data:
                sent += len(data)
                yield data
            if truncated:
                break
        if not (timed_out or truncated):
            code = process.wait(max(0.1, deadline - time.monotonic()))
            timed_out = code is None
    finally:
        if code is None:
            process.close()
    if code is None:
        code = process.wait(2.0) if truncated else None
    yield CommandEnd(exit_code=code, timed_out=timed_out, truncated=truncated, output_bytes=sent)


@dataclass(frozen=True, slots=True)
class CommandResult:
    output: bytes
    end: CommandEnd


def run_command(
    *,
    session: Session,
    actor: Principal,
    runtime: Runtime,
    environment_id: int,
    command: list[str],
    timeout: float,
    cap: int,
    container: str | None = None,
) -> CommandResult:
    """Run ``command`` to its end (or its deadline, or its output cap) and collect the output."""
    process = start_command(
        session=session,
        actor=actor,
        runtime=runtime,
        environment_id=environment_id,
        command=command,
        container=container,
    )
    chunks: list[bytes] = []
    for piece in follow_output(process, timeout=timeout, cap=cap):
        if isinstance(piece, CommandEnd):
            return CommandResult(b"".join(chunks), piece)
        chunks.append(piece)
    raise AssertionError("follow_output always ends with a CommandEnd")  # pragma: no cover
