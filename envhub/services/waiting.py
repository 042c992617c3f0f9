"""Waiting until an environment is ready: ``envhub env wait``, MCP's ``wait_until_ready``.

Each look is its own short read (no transaction is held while waiting), so a
wait of minutes costs the database one query a second. The wait ends when the
environment is ready, when it can no longer become ready without someone
acting (failed, being deleted, deleted), or at the deadline.
"""

from __future__ import annotations

import time
from typing import TypedDict

from envhub.domain.phases import Phase
from envhub.domain.principals import Principal
from envhub.services.environment_views import EnvironmentDetail, environment_summary
from envhub.services.units import read_only

# The longest one call may wait; a client that wants longer asks again.
MAX_WAIT = 900.0
# Phases after which waiting longer changes nothing by itself.
_SETTLED = frozenset({Phase.ready, Phase.failed, Phase.deleting, Phase.deleted})


class WaitOutcome(TypedDict):
    ready: bool  # the environment serves (phase ready)
    timed_out: bool  # the deadline came first; it may still become ready
    waited_seconds: float
    environment: EnvironmentDetail


def wait_until_ready(
    *, actor: Principal, environment_id: int, timeout: float, interval: float = 1.0
) -> WaitOutcome:
    """Look at the environment every ``interval`` seconds until it settles or ``timeout`` passes."""
    started = time.monotonic()
    deadline = started + max(0.0, min(timeout, MAX_WAIT))
    while True:
        with read_only() as session:
            detail = environment_summary(session=session, actor=actor, environment_id=environment_id)
        now = time.monotonic()
        settled = Phase(detail["phase"]) in _SETTLED
        if settled or now >= deadline:
            return WaitOutcome(
                ready=detail["phase"] == Phase.ready.value,
                timed_out=not settled,
                waited_seconds=round(now - started, 1),
                environment=detail,
            )
        time.sleep(min(interval, deadline - now))
