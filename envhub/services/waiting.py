"""Waiting for an environment to reach a phase: REST's ``/wait``, MCP's ``wait_until_ready``.

One rule for every face (``envhub env wait`` goes through REST). Each look is
its own short read (no transaction or lock is held while waiting), authorized
like any read, so a share revoked meanwhile ends the wait with ``not_found``.
The wait ends when the environment is in the phase asked for, when waiting
longer would change nothing by itself (it rests in another phase, or it is
being deleted and something else was asked for), or at the deadline.
"""

from __future__ import annotations

import time
from typing import TypedDict

from envhub.domain.phases import Phase
from envhub.domain.principals import Principal
from envhub.services import environments, jobruns
from envhub.services.environment_views import EnvironmentDetail, environment_detail
from envhub.services.units import read_only

# The longest one call may wait; a client that wants longer asks again. Faces
# that hold an HTTP request open (REST's long poll) cap it lower.
MAX_WAIT = 900.0
POLL_EVERY = 0.5
# Where an environment rests until someone acts; waiting longer changes nothing.
_RESTING = frozenset({Phase.ready, Phase.failed, Phase.sleeping, Phase.deleted})


class WaitResult(TypedDict):
    reached: bool  # the environment is in the phase asked for
    settled: bool  # waiting longer changes nothing by itself: it rests elsewhere, or is on its way out
    waited_seconds: float
    environment: EnvironmentDetail


def wait_for_environment(
    *,
    actor: Principal,
    environment_id: int,
    phase: Phase = Phase.ready,
    timeout: float = 30.0,
    interval: float = POLL_EVERY,
) -> WaitResult:
    """Wait until the environment is in ``phase``, has settled elsewhere, or ``timeout`` passed."""
    started = time.monotonic()
    deadline = started + max(0.0, min(timeout, MAX_WAIT))
    while True:
        with read_only() as session:
            environment = environments.get_environment(
                session=session, actor=actor, environment_id=environment_id
            )
            leaving = environment.desired_state == "absent"
            reached = environment.phase is phase
            resting = environment.phase in _RESTING and leaving == (environment.phase is Phase.deleted)
            if resting and not reached and environment.phase in (Phase.ready, Phase.sleeping):
                # A sleep or wake asked for moves it on by itself: not settled yet.
                resting = not any(
                    run.kind in (jobruns.SLEEP, jobruns.WAKE)
                    for run in jobruns.active_runs(session, environment_id)
                )
            settled = resting or (leaving and phase not in (Phase.deleting, Phase.deleted))
            detail = environment_detail(environment)
        now = time.monotonic()
        if reached or settled or now >= deadline:
            return WaitResult(
                reached=reached,
                settled=settled,
                waited_seconds=round(now - started, 3),
                environment=detail,
            )
        time.sleep(min(interval, deadline - now))
