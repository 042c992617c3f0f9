"""The environment lifecycle as a state machine.

``pending -> provisioning -> ready -> (updating -> ready) -> sleeping -> ready ...
-> deleting -> deleted``, with ``failed`` reachable from any working phase and
retryable. The services and jobs move environments only along these edges.
"""

from __future__ import annotations

from enum import StrEnum

from envhub.errors import InvalidTransition


class Phase(StrEnum):
    pending = "pending"
    provisioning = "provisioning"
    ready = "ready"
    updating = "updating"
    sleeping = "sleeping"
    failed = "failed"
    deleting = "deleting"
    deleted = "deleted"


WORKING = frozenset({Phase.pending, Phase.provisioning, Phase.updating, Phase.deleting})
LIVE = frozenset(set(Phase) - {Phase.deleted})

_EDGES: dict[Phase, frozenset[Phase]] = {
    Phase.pending: frozenset({Phase.provisioning, Phase.failed, Phase.deleting}),
    Phase.provisioning: frozenset({Phase.ready, Phase.failed, Phase.deleting, Phase.provisioning}),
    Phase.ready: frozenset({Phase.updating, Phase.sleeping, Phase.deleting, Phase.provisioning}),
    Phase.updating: frozenset({Phase.ready, Phase.failed, Phase.deleting, Phase.updating}),
    Phase.sleeping: frozenset({Phase.provisioning, Phase.deleting}),
    Phase.failed: frozenset({Phase.pending, Phase.provisioning, Phase.updating, Phase.deleting}),
    Phase.deleting: frozenset({Phase.deleted, Phase.deleting}),
    Phase.deleted: frozenset(),
}


def can_transition(current: Phase, target: Phase) -> bool:
    return target in _EDGES[current]


def transition(current: Phase, target: Phase) -> Phase:
    """Return ``target`` if the lifecycle allows moving there from ``current``."""
    if not can_transition(current, target):
        raise InvalidTransition(
            f"an environment cannot go from {current.value} to {target.value}",
            details={"from": current.value, "to": target.value},
        )
    return target


def is_deletable(phase: Phase) -> bool:
    return can_transition(phase, Phase.deleting)


def is_redeployable(phase: Phase) -> bool:
    """A redeploy of a sleeping environment wakes it with the new deploy (a pull request pushed to)."""
    return phase in {Phase.ready, Phase.failed, Phase.updating, Phase.provisioning, Phase.sleeping}


# How each phase reads at a glance, as a Radix colour every face can map:
# green serves, blue is on its way, red needs a person, gray is at rest.
TONES: dict[Phase, str] = {
    Phase.pending: "gray",
    Phase.provisioning: "blue",
    Phase.ready: "green",
    Phase.updating: "blue",
    Phase.sleeping: "gray",
    Phase.failed: "red",
    Phase.deleting: "orange",
    Phase.deleted: "gray",
}
