"""The patches that put a workload to sleep and wake it (domain/kube/dormancy.py)."""

from __future__ import annotations

from typing import Any

from envhub.domain.kube.dormancy import (
    REPLICAS_ANNOTATION,
    applied_patch,
    is_asleep,
    sleep_patch,
    wake_patch,
)


def workload(replicas: int | None = 3, recorded: str | None = None) -> dict[str, Any]:
    annotations = {"other": "kept"} | ({REPLICAS_ANNOTATION: recorded} if recorded is not None else {})
    spec = {} if replicas is None else {"replicas": replicas}
    return {"metadata": {"name": "web", "annotations": annotations}, "spec": spec}


def merged(obj: dict[str, Any], patch: dict[str, Any] | None) -> dict[str, Any]:
    """What the API server stores after a merge patch (a null removes the key)."""
    if patch is None:
        return obj
    annotations = dict(obj["metadata"]["annotations"])
    for key, value in patch.get("metadata", {}).get("annotations", {}).items():
        if value is None:
            annotations.pop(key, None)
        else:
            annotations[key] = value
    return {
        "metadata": {**obj["metadata"], "annotations": annotations},
        "spec": {**obj["spec"], **patch["spec"]},
    }


def test_sleep_records_the_replicas_and_wake_restores_them() -> None:
    asleep = merged(workload(3), sleep_patch(workload(3)))
    assert asleep["spec"]["replicas"] == 0
    assert is_asleep(asleep)
    assert asleep["metadata"]["annotations"][REPLICAS_ANNOTATION] == "3"
    awake = merged(asleep, wake_patch(asleep))
    assert awake["spec"]["replicas"] == 3
    assert awake["metadata"]["annotations"] == {"other": "kept"}


def test_a_second_sleep_keeps_the_first_count_and_a_second_wake_does_nothing() -> None:
    asleep = merged(workload(3), sleep_patch(workload(3)))
    assert sleep_patch(asleep) is None  # a killed job run again: the count 3 is not overwritten by 0
    awake = merged(asleep, wake_patch(asleep))
    assert wake_patch(awake) is None


def test_a_workload_scaled_up_while_asleep_goes_back_to_zero_keeping_the_count() -> None:
    woken_behind_our_back = workload(2, recorded="3")
    assert sleep_patch(woken_behind_our_back) == {"spec": {"replicas": 0}}


def test_defaults_and_nonsense() -> None:
    assert sleep_patch(workload(None))["metadata"]["annotations"][REPLICAS_ANNOTATION] == "1"  # type: ignore[index]
    assert wake_patch(workload(0, recorded="many"))["spec"] == {"replicas": 1}  # type: ignore[index]
    assert wake_patch(workload(0, recorded="0"))["spec"] == {"replicas": 0}  # type: ignore[index]


def test_an_apply_over_a_sleeping_workload_finishes_waking_it() -> None:
    # A rendered service's apply set its replicas: they stand, only the note goes.
    assert applied_patch(workload(2, recorded="3")) == {
        "metadata": {"annotations": {REPLICAS_ANNOTATION: None}}
    }
    # A manifest without replicas left it at zero: the count it slept with comes back.
    assert applied_patch(workload(0, recorded="3"))["spec"] == {"replicas": 3}  # type: ignore[index]
    assert applied_patch(workload(3)) is None
