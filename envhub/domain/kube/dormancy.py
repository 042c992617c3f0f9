"""Scaling an environment's workloads to zero for its sleep, and back when it wakes.

Each scalable workload (Deployment, StatefulSet) keeps the replicas it had in an
annotation while it sleeps, so waking restores exactly what ran, even what a
person or an autoscaler had changed since the last apply. The patches are pure
functions of the stored object, so a sleep or wake run again after a killed job
finishes the work without losing the recorded count: an object already asleep
keeps its annotation (never overwritten with 0), one already awake has none.
"""

from __future__ import annotations

from typing import Any

REPLICAS_ANNOTATION = "envhub.dev/replicas-before-sleep"
# (apiVersion, kind) of what sleep scales: DaemonSets and Jobs have no replicas to keep.
SCALABLE_KINDS: tuple[tuple[str, str], ...] = (("apps/v1", "Deployment"), ("apps/v1", "StatefulSet"))


def _annotations(obj: dict[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("annotations") or {})


def _replicas(obj: dict[str, Any]) -> int:
    value = (obj.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


def sleep_patch(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The patch that puts ``obj`` to sleep; None when it already sleeps."""
    recorded = _annotations(obj).get(REPLICAS_ANNOTATION)
    if recorded is not None:
        # Asleep already (or half-way): keep the count first recorded; scale down what came back.
        return None if _replicas(obj) == 0 else {"spec": {"replicas": 0}}
    return {"metadata": {"annotations": {REPLICAS_ANNOTATION: str(_replicas(obj))}}, "spec": {"replicas": 0}}


def wake_patch(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The patch that wakes ``obj`` with the replicas it slept with; None when it is awake."""
    recorded = _annotations(obj).get(REPLICAS_ANNOTATION)
    if recorded is None:
        return None
    try:
        replicas = max(0, int(recorded))
    except ValueError:
        replicas = 1  # someone edited it into nonsense: one is what a workload runs by default
    return {"metadata": {"annotations": {REPLICAS_ANNOTATION: None}}, "spec": {"replicas": replicas}}


def is_asleep(obj: dict[str, Any]) -> bool:
    return REPLICAS_ANNOTATION in _annotations(obj)


def applied_patch(obj: dict[str, Any]) -> dict[str, Any] | None:
    """After an apply (a redeploy of a sleeping environment): the patch that finishes waking ``obj``.

    Replicas the apply set (a rendered service's) stand and only the note goes; a workload whose
    manifest leaves replicas out is still at zero and gets back the count it slept with.
    """
    if not is_asleep(obj):
        return None
    if _replicas(obj) == 0:
        return wake_patch(obj)
    return {"metadata": {"annotations": {REPLICAS_ANNOTATION: None}}}
