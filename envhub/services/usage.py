"""How much CPU and memory an environment's containers use, now and over the last minutes.

The runtime measures (the metrics API on Kubernetes; locally the environment's cgroup,
or its process tree where no cgroup can be made) and says where the figures come from;
this module keeps the readings in a short ring per environment, in this
process's memory, so the dashboard can plot the last :data:`RING` readings and
``envhub env top`` can print the newest. Readings are taken when someone asks,
at most one per :data:`SAMPLE_EVERY` seconds per environment however many ask,
so a plot starts when the first person looks and fills in while they watch.
A runtime that cannot measure says so (``available`` False, with the reason):
never zeros that look like an idle app.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TypedDict

from sqlmodel import Session

from envhub.domain.principals import Principal
from envhub.errors import EnvhubError
from envhub.runtime.base import ContainerInfo, ContainerUsage, Inspection, Runtime, Usage, UsageReader
from envhub.services import inspection
from envhub.services.environments import get_environment

SAMPLE_EVERY = 5.0
RING = 120  # readings kept: ten minutes at one per SAMPLE_EVERY
_MIB = 1024 * 1024
_FORGET_AFTER = 2 * RING * SAMPLE_EVERY


class UsageRow(TypedDict):
    pod: str
    container: str
    cpu: str  # "12m" (millicores, as kubectl top prints them)
    memory: str  # "34.5Mi"
    memory_peak: str  # the most since the container started ("41.0Mi"), "" where the runtime cannot say
    cpu_millicores: float
    memory_bytes: int
    requests: str  # "cpu 100m · memory 128Mi", from the container's spec ("" when none)
    limits: str


class UsagePoint(TypedDict):
    time: str  # "17:03:05" UTC
    cpu: float  # millicores
    memory: float  # MiB


class UsageSeries(TypedDict):
    label: str  # "container (pod)"
    points: list[UsagePoint]


class UsageView(TypedDict):
    available: bool
    note: str  # why there is nothing to show (no metrics API, nothing running), else ""
    source: str  # where the figures come from: "metrics.k8s.io", "cgroup v2", "process tree (psutil)"
    source_note: str  # why a weaker source than the runtime's best ("No cgroup for ..."), else ""
    measured_at: str  # RFC 3339 UTC of the newest reading, "" when none
    rows: list[UsageRow]
    series: list[UsageSeries]


EMPTY_USAGE = UsageView(
    available=False, note="Measuring…", source="", source_note="", measured_at="", rows=[], series=[]
)


@dataclass(frozen=True, slots=True)
class _Reading:
    at: float  # time.time()
    usage: Usage


_lock = threading.Lock()
_rings: dict[int, deque[_Reading]] = {}


def _read(runtime: UsageReader, environment_id: int) -> _Reading:
    """The newest reading, taking one when the last is older than :data:`SAMPLE_EVERY`."""
    now = time.time()
    with _lock:
        ring = _rings.setdefault(environment_id, deque(maxlen=RING))
        if ring and now - ring[-1].at < SAMPLE_EVERY:
            return ring[-1]
    reading = _Reading(time.time(), runtime.usage(environment_id))
    with _lock:
        ring = _rings.setdefault(environment_id, deque(maxlen=RING))
        if not ring or ring[-1].at < reading.at:
            ring.append(reading)
        # Rings nobody has read for a while would only show a gap: let them go.
        for stale in [
            key for key, kept in _rings.items() if kept and reading.at - kept[-1].at > _FORGET_AFTER
        ]:
            del _rings[stale]
    return reading


def _history(environment_id: int) -> list[_Reading]:
    with _lock:
        return list(_rings.get(environment_id, ()))


def forget(environment_id: int) -> None:
    with _lock:
        _rings.pop(environment_id, None)


def _cpu(millicores: float) -> str:
    return f"{millicores:.0f}m" if millicores >= 1 or millicores == 0 else f"{millicores:.1f}m"


def _memory(count: int) -> str:
    return f"{count / _MIB:.1f}Mi"


def _specs(found: Inspection | EnvhubError | None) -> dict[tuple[str, str], ContainerInfo]:
    if not isinstance(found, Inspection):
        return {}
    return {(pod.name, c.name): c for pod in found.pods for c in pod.containers}


def _quantities(values: dict[str, str]) -> str:
    return " · ".join(f"{name} {quantity}" for name, quantity in sorted(values.items()))


def _row(usage: ContainerUsage, spec: ContainerInfo | None) -> UsageRow:
    return UsageRow(
        pod=usage.pod,
        container=usage.container,
        cpu=_cpu(usage.cpu_millicores),
        memory=_memory(usage.memory_bytes),
        memory_peak=_memory(usage.memory_peak_bytes) if usage.memory_peak_bytes is not None else "",
        cpu_millicores=round(usage.cpu_millicores, 1),
        memory_bytes=usage.memory_bytes,
        requests=_quantities(spec.requests) if spec else "",
        limits=_quantities(spec.limits) if spec else "",
    )


def _series(history: list[_Reading]) -> list[UsageSeries]:
    by_container: dict[tuple[str, str], list[UsagePoint]] = {}
    for reading in history:
        label = time.strftime("%H:%M:%S", time.gmtime(reading.at))
        for usage in reading.usage.containers:
            by_container.setdefault((usage.pod, usage.container), []).append(
                UsagePoint(
                    time=label,
                    cpu=round(usage.cpu_millicores, 1),
                    memory=round(usage.memory_bytes / _MIB, 1),
                )
            )
    return [
        UsageSeries(label=f"{container} ({pod})", points=points)
        for (pod, container), points in sorted(by_container.items())
    ]


def unmeasured(note: str, *, source: str = "") -> UsageView:
    """A view with nothing measured, saying why."""
    return UsageView(
        available=False, note=note, source=source, source_note="", measured_at="", rows=[], series=[]
    )


def environment_usage(
    *, session: Session, actor: Principal, runtime: Runtime, environment_id: int
) -> UsageView:
    """CPU and memory per container now, with the readings of the last minutes (see the module)."""
    environment = get_environment(session=session, actor=actor, environment_id=environment_id)
    if environment.phase in inspection.GONE:
        forget(environment_id)
        return unmeasured("Nothing runs any more: the environment is deleted (or being deleted).")
    if not isinstance(runtime, UsageReader):
        return unmeasured(f"The {runtime.name} runtime does not measure CPU and memory.")
    try:
        reading = _read(runtime, environment_id)
    except EnvhubError as exc:
        if not exc.retryable:
            raise
        return unmeasured(f"Cannot measure right now: {exc.message}")
    usage = reading.usage
    if not usage.available:
        return unmeasured(f"Not measured: {usage.reason}.", source=usage.source)
    state = f"{environment.phase.value}/{environment.observed_generation}/{environment.condition}"
    found = inspection.shared_inspection(
        actor=actor, runtime=runtime, environment_id=environment_id, state=state
    )
    specs = _specs(found)
    rows = [
        _row(container, specs.get((container.pod, container.container))) for container in usage.containers
    ]
    return UsageView(
        available=True,
        note="" if rows else "No container is running.",
        source=usage.source,
        source_note=usage.source_note,
        measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(reading.at)),
        rows=rows,
        series=_series([r for r in _history(environment_id) if r.usage.available]),
    )
