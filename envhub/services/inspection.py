"""Looking inside an environment: its pods (or process), runtime events, and logs.

Unlike database reads these reach the runtime (a process probe, or the
Kubernetes API), and every face may ask often: a dashboard page reloads every
few seconds while people watch it, and a CLI or an agent polls. So inspections
are shared and throttled: one per environment at most every
:data:`INSPECT_EVERY` seconds, however many ask, and a slow runtime holds a
caller up for :data:`INSPECT_WAIT` seconds at most (it gets the last answer
meanwhile). When the environment itself changes (phase, generation, condition)
the answer should not contradict the caller's other facts, so a change allows
a new look after :data:`INSPECT_AFTER_CHANGE` seconds instead; such changes
are few. The cache is read only after the caller's own unit of work has
authorized the environment, and every inspection authorizes again.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from typing import Any, TypedDict

from sqlmodel import Session

from envhub.domain import humanize as fmt
from envhub.domain import redaction
from envhub.domain.phases import Phase
from envhub.domain.principals import Principal
from envhub.errors import EnvhubError
from envhub.models.db import session_scope
from envhub.runtime.base import (
    ContainerInfo,
    EnvVarInfo,
    EventInfo,
    Inspection,
    LastTermination,
    PodInfo,
    Runtime,
)
from envhub.services.environments import get_environment

log = logging.getLogger(__name__)

INSPECT_EVERY = 3.0
INSPECT_AFTER_CHANGE = 1.0
INSPECT_WAIT = 4.0
# A runtime call still going after this long is given up on and asked again.
ABANDON_AFTER = 60.0
LOG_LINES = 200
_FORGET_AFTER = 300.0
# Nothing runs any more; the local runtime would even re-create a deleted
# environment's folder when its logs are read.
GONE = frozenset({Phase.deleting, Phase.deleted})
# Waiting reasons that will not fix themselves.
_STUCK = ("BackOff", "Err", "Invalid", "CreateContainerConfigError", "OOMKilled")


class EnvRow(TypedDict):
    name: str
    value: str  # redacted on the server when secret (domain/redaction.py)
    source: str  # "" (a literal), secret, configmap, field, resource
    reference: str  # where a value that is not literal comes from
    redacted: bool


class WorkloadRow(TypedDict):
    """One container; the pod's fields are shown on its first container's row."""

    first: bool
    pod: str
    pod_phase: str
    pod_tone: str
    pod_ready: str
    started: str
    started_stamp: str
    container: str
    state: str
    tone: str
    ready: bool
    restarts: str
    reason: str
    image: str
    image_id: str  # the digest that runs ("sha256:..."), "" when the runtime has none
    last_exit: str  # how the previous instance ended: "OOMKilled (exit 137) 3 min ago"
    last_exit_stamp: str
    probes: list[str]  # "readiness: HTTP GET :8080/healthz (every 10s, timeout 1s, 3 failures)"
    requests: str  # "cpu 100m · memory 128Mi"
    limits: str
    env: list[EnvRow]


class EventRow(TypedDict):
    time: str  # last seen
    stamp: str
    first: str  # first seen, when it differs from last
    first_stamp: str
    warning: bool
    reason: str
    object: str
    message: str
    count: str


class WorkloadsInfo(TypedDict):
    location_label: str  # "Namespace", "Workspace" or ""
    location: str
    note: str  # why nothing can be shown (deleted, cluster unreachable), else ""
    empty: str  # what to say when there are no pods
    events_empty: str
    local: bool  # the local runtime: a process, and no events at all


class WorkloadsView(TypedDict):
    info: WorkloadsInfo
    rows: list[WorkloadRow]
    events: list[EventRow]


# -- builders --------------------------------------------------------------


def _tone(container: ContainerInfo) -> str:
    if container.state == "running":
        return "green" if container.ready else "amber"
    if container.state == "terminated":
        return "gray" if "(code 0)" in container.reason or container.reason == "Completed" else "red"
    if any(word in container.reason for word in _STUCK):
        return "red"
    return "amber"


def _pod_tone(phase: str) -> str:
    return {"Running": "green", "Pending": "amber", "Failed": "red"}.get(phase, "gray")


def _quantities(values: dict[str, str]) -> str:
    return " · ".join(f"{name} {quantity}" for name, quantity in sorted(values.items()))


def _last_exit(ended: LastTermination | None) -> str:
    if ended is None:
        return ""
    how = [ended.reason or "exited"]
    if ended.exit_code is not None:
        named = fmt.signal_name(ended.signal) if ended.signal else ""
        how.append(f"(exit {ended.exit_code}{f', {named}' if named and named != ended.reason else ''})")
    when = fmt.ago(ended.finished_at)
    return " ".join([*how, *([when] if when else [])])


def env_rows(variables: tuple[EnvVarInfo, ...]) -> list[EnvRow]:
    """The variables as every face shows them: secret values never leave the server."""
    rows = []
    for variable in variables:
        shown = redaction.shown_value(variable.name, variable.value, from_secret=variable.source == "secret")
        rows.append(
            EnvRow(
                name=variable.name,
                value=shown.value if not variable.source or variable.source == "secret" else "",
                source=variable.source,
                reference=variable.reference,
                redacted=shown.redacted,
            )
        )
    return rows


def _details(container: ContainerInfo) -> dict[str, Any]:
    ended = container.last_termination
    return {
        "image": container.image,
        "image_id": container.image_id,
        "last_exit": _last_exit(ended),
        "last_exit_stamp": fmt.stamp(ended.finished_at) if ended is not None else "",
        "probes": [
            f"{p.kind}: {p.action}" + (f" ({p.timing})" if p.timing else "") for p in container.probes
        ],
        "requests": _quantities(container.requests),
        "limits": _quantities(container.limits),
        "env": env_rows(container.env),
    }


def workload_rows(pods: tuple[PodInfo, ...]) -> list[WorkloadRow]:
    rows: list[WorkloadRow] = []
    for pod in pods:
        ready = sum(1 for c in pod.containers if c.ready)
        shared = {
            "pod": pod.name,
            "pod_phase": pod.phase,
            "pod_tone": _pod_tone(pod.phase),
            "pod_ready": f"{ready}/{len(pod.containers)} ready" if pod.containers else "no containers",
            "started": fmt.ago(pod.started_at),
            "started_stamp": fmt.stamp(pod.started_at),
        }
        containers = pod.containers or (ContainerInfo(name="", state="", ready=False),)
        for index, container in enumerate(containers):
            rows.append(
                WorkloadRow(
                    first=index == 0,
                    **shared,  # type: ignore[typeddict-item]
                    container=container.name,
                    state=container.state,
                    tone=_tone(container),
                    ready=container.ready,
                    restarts=str(container.restarts) if container.restarts else "",
                    reason=container.reason,
                    **_details(container),
                )
            )
    return rows


def event_rows(events: tuple[EventInfo, ...]) -> list[EventRow]:
    return [
        EventRow(
            time=fmt.ago(event.time),
            stamp=fmt.stamp(event.time),
            first=fmt.ago(event.first_time) if event.first_time and event.first_time != event.time else "",
            first_stamp=fmt.stamp(event.first_time) if event.first_time else "",
            warning=event.type == "Warning",
            reason=event.reason,
            object=event.object,
            message=event.message,
            count=f"×{event.count}" if event.count > 1 else "",
        )
        for event in events
    ]


def _info(*, local: bool, location: str = "", note: str = "", starting: bool = False) -> WorkloadsInfo:
    if starting:
        empty = "No process started yet." if local else "No pods yet."
    else:
        empty = "No process is running." if local else "No pods in the namespace."
    return WorkloadsInfo(
        location_label=("Workspace" if local else "Namespace") if location else "",
        location=location,
        note=note,
        empty=empty,
        events_empty=(
            "The local runtime records no events: what the process prints is in the logs below."
            if local
            else "No recent events (Kubernetes keeps them for about an hour)."
        ),
        local=local,
    )


def workloads_view(
    found: Inspection | EnvhubError | None, *, local: bool, phase: Phase = Phase.ready
) -> WorkloadsView:
    """What the runtime answered (``None``: not yet), as every face shows it."""
    if found is None:
        return WorkloadsView(info=_info(local=local, note="Asking the runtime…"), rows=[], events=[])
    if isinstance(found, EnvhubError):
        note = f"Cannot look inside right now ({found.code}): {found.message}"
        return WorkloadsView(info=_info(local=local, note=note), rows=[], events=[])
    location, note = found.location, ""
    # inspect_environment reports an unreachable cluster this way rather than raising.
    if found.unavailable:
        location, note = "", "Cannot look inside right now: " + found.unavailable
    starting = phase in (Phase.pending, Phase.provisioning)
    return WorkloadsView(
        info=_info(local=local, location=location, note=note, starting=starting),
        rows=workload_rows(found.pods),
        events=event_rows(found.events),
    )


def gone_view(*, local: bool) -> WorkloadsView:
    note = "Nothing runs any more: the environment is deleted (or being deleted)."
    return WorkloadsView(info=_info(local=local, note=note), rows=[], events=[])


EMPTY_INFO = _info(local=True)


# -- inspecting ---------------------------------------------------------------


def inspect_environment(
    *, session: Session, actor: Principal, runtime: Runtime, environment_id: int
) -> Inspection:
    """Ask the runtime now (unthrottled); an unreachable cluster is an answer, not an error."""
    get_environment(session=session, actor=actor, environment_id=environment_id)
    try:
        return runtime.inspect(environment_id)
    except EnvhubError as exc:
        if exc.retryable:  # cluster unreachable: show nothing rather than fail the caller
            return Inspection(unavailable=exc.message)
        raise


_lock = threading.Lock()
# environment id -> (when it was asked, the environment's state then, what the runtime said)
_results: dict[int, tuple[float, str, Inspection | EnvhubError]] = {}
# environment id -> (when it was asked, the answer to come): one question at a time
_asking: dict[int, tuple[float, Future[Inspection | EnvhubError]]] = {}


def _inspect_now(actor: Principal, runtime: Runtime, environment_id: int) -> Inspection | EnvhubError:
    try:
        with session_scope() as session:
            return inspect_environment(
                session=session, actor=actor, runtime=runtime, environment_id=environment_id
            )
    except EnvhubError as exc:
        return exc
    except Exception as exc:  # a view must never break on a nicety
        log.exception("inspecting environment %s failed", environment_id)
        return EnvhubError(f"unexpected error: {type(exc).__name__}")


def _ask(
    actor: Principal, runtime: Runtime, environment_id: int, state: str
) -> Future[Inspection | EnvhubError]:
    """Start an inspection in its own thread; called with ``_lock`` held."""
    asked = time.monotonic()
    future: Future[Inspection | EnvhubError] = Future()

    def run() -> None:
        result: Inspection | EnvhubError = EnvhubError("the inspection did not finish")
        try:
            result = _inspect_now(actor, runtime, environment_id)
        finally:
            with _lock:
                previous = _results.get(environment_id)
                if previous is None or previous[0] < asked:  # an abandoned call may end late
                    _results[environment_id] = (asked, state, result)
                if _asking.get(environment_id, (None,))[0] == asked:
                    del _asking[environment_id]
                now = time.monotonic()
                for key in [key for key, (at, *_) in _results.items() if now - at > _FORGET_AFTER]:
                    del _results[key]
            future.set_result(result)

    _asking[environment_id] = (asked, future)
    # A daemon thread, not a pool: a runtime call that hangs must not hold up shutdown.
    threading.Thread(target=run, name=f"envhub-inspect-{environment_id}", daemon=True).start()
    return future


def _inspect_throttled(
    *, actor: Principal, runtime: Runtime, environment_id: int, state: str = ""
) -> Inspection | EnvhubError | None:
    """The latest inspection; ``None`` while the first one is still under way.

    ``state`` sums up the environment as the caller read it; when it differs
    from the cached answer's, that answer is renewed sooner. The caller must
    have authorized ``environment_id`` for ``actor`` already.
    """
    now = time.monotonic()
    with _lock:
        last = _results.get(environment_id)
        if last is not None and now - last[0] < (INSPECT_EVERY if last[1] == state else INSPECT_AFTER_CHANGE):
            return last[2]
        asking = _asking.get(environment_id)
        if asking is None or now - asking[0] > ABANDON_AFTER:
            future = _ask(actor, runtime, environment_id, state)
        else:
            future = asking[1]
    try:
        return future.result(timeout=INSPECT_WAIT)
    except TimeoutError:
        return last[2] if last is not None else None


def shared_inspection(
    *, actor: Principal, runtime: Runtime, environment_id: int, state: str = ""
) -> Inspection | EnvhubError | None:
    """The throttled inspection (see the module), for a caller that has authorized ``environment_id``."""
    return _inspect_throttled(actor=actor, runtime=runtime, environment_id=environment_id, state=state)


def environment_workloads(
    *, session: Session, actor: Principal, runtime: Runtime, environment_id: int
) -> WorkloadsView:
    """What runs inside the environment, throttled (see the module's docstring).

    Authorizes like any read, then may wait a few seconds for the runtime:
    give it a read-only session (``services.units.read_only``), which holds no lock.
    """
    environment = get_environment(session=session, actor=actor, environment_id=environment_id)
    local = runtime.name == "local"
    if environment.phase in GONE:
        return gone_view(local=local)
    state = f"{environment.phase.value}/{environment.observed_generation}/{environment.condition}"
    found = _inspect_throttled(actor=actor, runtime=runtime, environment_id=environment_id, state=state)
    return workloads_view(found, local=local, phase=environment.phase)


def log_containers(spec: dict[str, Any], *, runtime: Runtime) -> list[str]:
    """The services a person can pick the logs (or a shell) of; empty when there is nothing to pick.

    The local runtime runs the project's command, not its container services.
    """
    services = spec.get("services") or []
    names = [str(s["name"]) for s in services if isinstance(s, dict) and s.get("name")]
    if len(names) < 2 or runtime.name == "local":
        return []
    return names
