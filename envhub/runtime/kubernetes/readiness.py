"""Is an environment's workload ready, and if not, what is it waiting for?

Works on plain dicts (as the API returns them) so it is easy to test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from envhub.runtime.base import ContainerInfo, EventInfo, PodInfo

_WAITING_HINTS = {
    "ImagePullBackOff": "cannot pull image",
    "ErrImagePull": "cannot pull image",
    "InvalidImageName": "invalid image name",
    "CrashLoopBackOff": "crash loop",
    "CreateContainerConfigError": "bad container configuration",
    "ContainerCreating": "creating container",
}
# Waiting reasons that will not fix themselves without a change to the spec.
STUCK_REASONS = frozenset({"InvalidImageName", "CreateContainerConfigError"})


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    message: str
    stuck: bool = False
    # The controller's refusal to create pods ("exceeded quota: ..."), verbatim.
    replica_failure: str | None = None


def deployment_ready(deployment: dict[str, Any]) -> bool:
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    metadata = deployment.get("metadata") or {}
    wanted = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
    if int(status.get("observedGeneration") or 0) < int(metadata.get("generation") or 0):
        return False
    return (
        int(status.get("updatedReplicas") or 0) >= wanted
        and int(status.get("availableReplicas") or 0) >= wanted
        and int(status.get("replicas") or 0) <= wanted
    ) or wanted == 0


def explain(deployments: list[dict[str, Any]], pods: list[dict[str, Any]]) -> Readiness:
    """Readiness of all deployments, with what still waits named for a person."""
    waiting = [d for d in deployments if not deployment_ready(d)]
    if not waiting:
        names = ", ".join(sorted(d["metadata"]["name"] for d in deployments)) or "no workloads"
        return Readiness(True, f"all workloads available ({names})")
    for deployment in waiting:
        for condition in (deployment.get("status") or {}).get("conditions") or []:
            if condition.get("type") == "ReplicaFailure" and condition.get("status") == "True":
                message = str(condition.get("message") or condition.get("reason") or "cannot create pods")
                name = deployment["metadata"]["name"]
                return Readiness(False, f"{name}: {message}", stuck=True, replica_failure=message)
    reasons: list[str] = []
    stuck = False
    for pod in pods:
        name = pod["metadata"]["name"]
        status = pod.get("status") or {}
        phase = status.get("phase", "Pending")
        statuses = status.get("containerStatuses") or []
        described = False
        for container in statuses:
            state = container.get("state") or {}
            if state.get("waiting"):
                reason = state["waiting"].get("reason", "Waiting")
                hint = _WAITING_HINTS.get(reason, reason)
                detail = state["waiting"].get("message", "")
                last = (container.get("lastState") or {}).get("terminated") or {}
                if reason == "CrashLoopBackOff" and last.get("exitCode") is not None:
                    # What the person needs first: how the process ended.
                    detail = f"last exit code {last['exitCode']}" + (f"; {detail}" if detail else "")
                reasons.append(f"{name}/{container['name']}: {hint}" + (f" ({detail})" if detail else ""))
                stuck = stuck or reason in STUCK_REASONS
                described = True
            elif state.get("terminated"):
                code = state["terminated"].get("exitCode")
                reasons.append(f"{name}/{container['name']}: exited with code {code}")
                described = True
        if not described and phase == "Pending":
            conditions = {c.get("type"): c for c in status.get("conditions") or []}
            scheduled = conditions.get("PodScheduled", {})
            if scheduled.get("status") == "False":
                reasons.append(f"{name}: pending ({scheduled.get('message') or 'not scheduled yet'})")
            else:
                reasons.append(f"{name}: pending")
    if not reasons:
        # Running right now, but not for long enough to count: say if it keeps dying.
        reasons = _restarts(pods)
    if not reasons:
        names = ", ".join(sorted(d["metadata"]["name"] for d in waiting))
        reasons.append(f"waiting for {names} to become available")
    return Readiness(False, "; ".join(reasons[:5]), stuck=stuck)


def _restarts(pods: list[dict[str, Any]]) -> list[str]:
    found = []
    for pod in pods:
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            count = int(container.get("restartCount") or 0)
            last = (container.get("lastState") or {}).get("terminated") or {}
            if count and (container.get("state") or {}).get("running"):
                code = f", last exit code {last['exitCode']}" if last.get("exitCode") is not None else ""
                times = "once" if count == 1 else f"{count} times"
                found.append(f"{pod['metadata']['name']}/{container['name']}: restarted {times}{code}")
    return found


def describe_pod(pod: dict[str, Any]) -> PodInfo:
    status = pod.get("status") or {}
    containers = []
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        kind = next((key for key in ("running", "waiting", "terminated") if state.get(key)), "waiting")
        detail = state.get(kind) or {}
        reason = str(detail.get("reason") or "")
        if kind == "terminated":
            reason = f"{reason or 'exited'} (code {detail.get('exitCode')})"
        containers.append(
            ContainerInfo(
                name=str(container.get("name")),
                state=kind,
                ready=bool(container.get("ready")),
                restarts=int(container.get("restartCount") or 0),
                reason=reason,
            )
        )
    if not containers:
        containers = [
            ContainerInfo(name=str(c.get("name")), state="waiting", ready=False, reason="not started")
            for c in (pod.get("spec") or {}).get("containers") or []
        ]
    return PodInfo(
        name=str(pod["metadata"]["name"]),
        phase=str(status.get("phase") or "Pending"),
        containers=tuple(containers),
        started_at=status.get("startTime"),
    )


def _event_time(event: dict[str, Any]) -> str:
    return str(
        event.get("lastTimestamp")
        or event.get("eventTime")
        or event.get("firstTimestamp")
        or (event.get("metadata") or {}).get("creationTimestamp")
        or ""
    )


def recent(events: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    return sorted(events, key=_event_time, reverse=True)[:count]


def describe_event(event: dict[str, Any]) -> EventInfo:
    involved = event.get("involvedObject") or {}
    return EventInfo(
        time=_event_time(event),
        type=str(event.get("type") or "Normal"),
        reason=str(event.get("reason") or ""),
        object=f"{involved.get('kind', '')}/{involved.get('name', '')}".strip("/"),
        message=str(event.get("message") or ""),
        count=int(event.get("count") or 1),
    )
