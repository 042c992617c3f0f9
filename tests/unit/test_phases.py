"""The environment lifecycle state machine."""

from __future__ import annotations

import pytest

from envhub.domain.phases import (
    LIVE,
    WORKING,
    Phase,
    can_transition,
    is_deletable,
    is_redeployable,
    transition,
)
from envhub.errors import InvalidTransition

ALLOWED = {
    (Phase.pending, Phase.provisioning),
    (Phase.provisioning, Phase.ready),
    (Phase.ready, Phase.updating),
    (Phase.updating, Phase.ready),
    (Phase.ready, Phase.sleeping),
    (Phase.sleeping, Phase.provisioning),
    (Phase.ready, Phase.deleting),
    (Phase.deleting, Phase.deleted),
    (Phase.failed, Phase.provisioning),
    (Phase.failed, Phase.pending),
    (Phase.failed, Phase.deleting),
}
FORBIDDEN = {
    (Phase.pending, Phase.ready),
    (Phase.deleted, Phase.pending),
    (Phase.deleted, Phase.deleting),
    (Phase.deleting, Phase.ready),
    (Phase.sleeping, Phase.failed),
    (Phase.ready, Phase.failed),
    (Phase.ready, Phase.pending),
    (Phase.deleting, Phase.provisioning),
}


@pytest.mark.parametrize(("current", "target"), sorted(ALLOWED))
def test_documented_edges_are_allowed(current: Phase, target: Phase) -> None:
    assert can_transition(current, target)
    assert transition(current, target) is target


@pytest.mark.parametrize(("current", "target"), sorted(FORBIDDEN))
def test_other_moves_raise_invalid_transition(current: Phase, target: Phase) -> None:
    assert not can_transition(current, target)
    with pytest.raises(InvalidTransition) as caught:
        transition(current, target)
    assert caught.value.code == "invalid_transition"
    assert caught.value.details == {"from": current.value, "to": target.value}
    assert f"from {current.value} to {target.value}" in caught.value.message


@pytest.mark.parametrize("phase", sorted(WORKING))
def test_failed_is_reachable_from_every_working_phase_but_deleting(phase: Phase) -> None:
    assert can_transition(phase, Phase.failed) is (phase is not Phase.deleting)


def test_deleted_is_terminal_and_every_other_phase_can_be_deleted() -> None:
    assert all(not can_transition(Phase.deleted, target) for target in Phase)
    assert Phase.deleted not in LIVE
    for phase in Phase:
        if phase is Phase.deleted:
            assert not is_deletable(phase)
        else:
            assert is_deletable(phase), phase


def test_redeployable_phases() -> None:
    assert {p for p in Phase if is_redeployable(p)} == {
        Phase.ready,
        Phase.failed,
        Phase.updating,
        Phase.provisioning,
        Phase.sleeping,  # a redeploy (a pull request pushed to) wakes it with the new deploy
    }


def test_every_phase_reaches_deleted() -> None:
    for start in Phase:
        seen, frontier = {start}, [start]
        while frontier:
            current = frontier.pop()
            for target in Phase:
                if can_transition(current, target) and target not in seen:
                    seen.add(target)
                    frontier.append(target)
        assert Phase.deleted in seen, start
