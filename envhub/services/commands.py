"""Running one command in an environment, without a terminal: ``envhub exec``, agents.

The same right as a shell (``environment.shell``): a command is what a person
would type there. Starting it is audited with the command line; the bridge
that streams its output (``api/v1/commands.py``) enforces the timeout and the
output cap.
"""

from __future__ import annotations

import shlex

from sqlmodel import Session

from envhub.domain.phases import Phase
from envhub.domain.policy import Action
from envhub.domain.principals import Principal
from envhub.errors import InvalidTransition, NotReady
from envhub.runtime.base import ExecSession, Runtime
from envhub.services.access import authorize_environment
from envhub.services.common import AuditTarget, audited
from envhub.services.environments import get_environment

_NOT_RUNNING = frozenset({Phase.deleting, Phase.deleted})
_SERVING = frozenset({Phase.ready, Phase.updating})


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
        environment = get_environment(session=session, actor=actor, environment_id=environment_id)
        project = authorize_environment(
            session, actor, environment, Action.environment_shell, what=f"environment {environment_id}"
        )
        target.name, target.team_id = f"{project.name}/{environment.name}", project.team_id
        if environment.phase in _NOT_RUNNING or environment.desired_state == "absent":
            raise InvalidTransition(
                f"cannot run a command in an environment that is {environment.phase.value}"
            )
        phase = environment.phase
        # Starting can take a while (a pod exec handshake): hold no transaction meanwhile.
        session.commit()
        try:
            started = runtime.exec(environment_id, command, tty=False, container=container)
        except NotReady as exc:
            if phase in _SERVING:
                raise  # a serving environment's runtime will catch up: retry (503)
            # Not provisioned yet: the environment's state, not envhub's, is in the way.
            raise InvalidTransition(
                f"cannot run a command in an environment that is {phase.value} ({exc.message})",
                hint="Wait until it is ready (GET /api/v1/environments/{id}/wait), then run the command.",
            ) from exc
        target.details = {"command": shlex.join(command)[:500], "container": container or ""}
    return started
