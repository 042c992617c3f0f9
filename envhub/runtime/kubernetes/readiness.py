"""Is an environment's workload ready, and if not, what is it waiting for?

A workload is a Deployment, StatefulSet or DaemonSet that has rolled out, or
a Job that has completed (:func:`rolled_out`, as ``kubectl rollout status``
judges them). What still waits is explained from its pods: for a person
(:func:`explain`, one line) and per workload (:func:`blockers`, for an error's
details). Works on plain dicts (as the API returns them) so it is easy to test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from envhub.runtime.base import ContainerInfo, EventInfo, PodInfo
from envhub.runtime.kubernetes import describing

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


# (apiVersion, kind) of what an apply waits for; CronJobs and the rest are not.
WORKLOAD_KINDS: tuple[tuple[str, str], ...] = (
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
    ("apps/v1", "DaemonSet"),
    ("batch/v1", "Job"),
)


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


def _count(status: dict[str, Any], key: str) -> int:
    return int(status.get(key) or 0)


def _wanted(spec: dict[str, Any], key: str) -> int:
    """A spec count that defaults to 1 (replicas, completions)."""
    value = spec.get(key)
    return 1 if value is None else int(value)


def _observed(obj: dict[str, Any]) -> bool:
    status, metadata = obj.get("status") or {}, obj.get("metadata") or {}
    return _count(status, "observedGeneration") >= int(metadata.get("generation") or 0)


def statefulset_rolled_out(statefulset: dict[str, Any]) -> bool:
    """Every replica ready at the update revision (or past the partition); OnDelete: ready."""
    spec, status = statefulset.get("spec") or {}, statefulset.get("status") or {}
    wanted = _wanted(spec, "replicas")
    if not _observed(statefulset):
        return False
    if _count(status, "readyReplicas") < wanted or _count(status, "replicas") > wanted:
        return False
    strategy = spec.get("updateStrategy") or {}
    if strategy.get("type") == "OnDelete":
        return True  # pods are replaced only when someone deletes them
    partition = int((strategy.get("rollingUpdate") or {}).get("partition") or 0)
    if partition:
        return _count(status, "updatedReplicas") >= wanted - partition
    return _count(status, "updatedReplicas") >= wanted and status.get("currentRevision") == status.get(
        "updateRevision"
    )


def daemonset_rolled_out(daemonset: dict[str, Any]) -> bool:
    """Updated and available on every node that should run it; OnDelete: available."""
    spec, status = daemonset.get("spec") or {}, daemonset.get("status") or {}
    if not _observed(daemonset):
        return False
    desired = _count(status, "desiredNumberScheduled")
    if (spec.get("updateStrategy") or {}).get("type") != "OnDelete" and _count(
        status, "updatedNumberScheduled"
    ) < desired:
        return False
    return _count(status, "numberAvailable") >= desired


def _condition(obj: dict[str, Any], kind: str, status: str = "True") -> dict[str, Any] | None:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == status:
            return dict(condition)
    return None


def job_complete(job: dict[str, Any]) -> bool:
    return _condition(job, "Complete") is not None


def job_failure(job: dict[str, Any]) -> dict[str, Any] | None:
    """The Job's ``Failed`` condition (it will not run again), or None."""
    return _condition(job, "Failed") if job.get("kind") == "Job" else None


def deployment_stalled(deployment: dict[str, Any]) -> dict[str, Any] | None:
    """The Deployment's ``Progressing`` condition when its controller has given up on the current
    rollout (``ProgressDeadlineExceeded``: no progress within ``spec.progressDeadlineSeconds``),
    else None. A condition from before the current generation was observed says nothing."""
    if (deployment.get("kind") or "Deployment") != "Deployment" or not _observed(deployment):
        return None
    condition = _condition(deployment, "Progressing", status="False")
    return condition if condition and condition.get("reason") == "ProgressDeadlineExceeded" else None


def workload_of(obj: dict[str, Any]) -> str:
    """``Kind/name``, as messages and error details name a workload.

    Apply responses and watch events carry their kind; the items of a list do
    not, and the only list read here is of Deployments (``runtime.status``).
    """
    return f"{obj.get('kind') or 'Deployment'}/{(obj.get('metadata') or {}).get('name', '')}"


def rolled_out(obj: dict[str, Any]) -> bool:
    kind = obj.get("kind") or "Deployment"  # see workload_of
    if kind == "StatefulSet":
        return statefulset_rolled_out(obj)
    if kind == "DaemonSet":
        return daemonset_rolled_out(obj)
    if kind == "Job":
        return job_complete(obj)
    return deployment_ready(obj)


def _owner(pod: dict[str, Any]) -> str | None:
    """The workload that made ``pod`` (``Kind/name``): a ReplicaSet's pods are its Deployment's."""
    metadata = pod.get("metadata") or {}
    for ref in metadata.get("ownerReferences") or []:
        if not ref.get("controller"):
            continue
        name = str(ref.get("name", ""))
        if ref.get("kind") == "ReplicaSet":
            suffix = "-" + str((metadata.get("labels") or {}).get("pod-template-hash", ""))
            return f"Deployment/{name.removesuffix(suffix)}" if name.endswith(suffix) else None
        return f"{ref.get('kind')}/{name}"
    return None


@dataclass(frozen=True, slots=True)
class _Problem:
    reason: str  # the machine word: CrashLoopBackOff, Unschedulable, Error...
    text: str  # "pod/container: crash loop (last exit code 1; ...)"
    stuck: bool = False


def _container_problem(pod: str, container: dict[str, Any], *, init: bool = False) -> _Problem | None:
    """What keeps one container from running (or, for an init container, from finishing)."""
    label = f"{pod}/{container['name']}" + (" (init)" if init else "")
    state = container.get("state") or {}
    if state.get("waiting"):
        reason = state["waiting"].get("reason", "Waiting")
        if init and reason in ("PodInitializing", "ContainerCreating"):
            return None  # its turn has not come yet
        hint = _WAITING_HINTS.get(reason, reason)
        detail = state["waiting"].get("message", "")
        last = (container.get("lastState") or {}).get("terminated") or {}
        if reason == "CrashLoopBackOff" and last.get("exitCode") is not None:
            # What the person needs first: how the process ended.
            detail = f"last exit code {last['exitCode']}" + (f"; {detail}" if detail else "")
        return _Problem(
            reason, f"{label}: {hint}" + (f" ({detail})" if detail else ""), reason in STUCK_REASONS
        )
    if state.get("terminated"):
        code = state["terminated"].get("exitCode")
        if init and code == 0:
            return None  # done, as it should be
        reason = str(state["terminated"].get("reason") or "Error")
        return _Problem(reason, f"{label}: exited with code {code}")
    return None


def _pod_problems(pods: list[dict[str, Any]]) -> list[_Problem]:
    problems: list[_Problem] = []
    for pod in pods:
        name = pod["metadata"]["name"]
        status = pod.get("status") or {}
        phase = status.get("phase", "Pending")
        if phase == "Succeeded":
            continue  # a Job's pod that did its work
        # A failing init container holds the others back: it is what to name.
        found = [
            problem
            for container in status.get("initContainerStatuses") or []
            if (problem := _container_problem(name, container, init=True)) is not None
        ]
        if not found:
            found = [
                problem
                for container in status.get("containerStatuses") or []
                if (problem := _container_problem(name, container)) is not None
            ]
        problems.extend(found)
        if not found and phase == "Pending":
            conditions = {c.get("type"): c for c in status.get("conditions") or []}
            scheduled = conditions.get("PodScheduled", {})
            if scheduled.get("status") == "False":
                text = f"{name}: pending ({scheduled.get('message') or 'not scheduled yet'})"
                problems.append(_Problem(str(scheduled.get("reason") or "Unschedulable"), text))
            else:
                problems.append(_Problem("Pending", f"{name}: pending"))
    if not problems:
        # Running right now, but not for long enough to count: say if it keeps dying.
        problems = _restarts(pods)
    return problems


def _replica_failure(workload: dict[str, Any]) -> dict[str, Any] | None:
    return _condition(workload, "ReplicaFailure")


def explain(workloads: list[dict[str, Any]], pods: list[dict[str, Any]]) -> Readiness:
    """Readiness of all workloads, with what still waits named for a person."""
    waiting = [w for w in workloads if not rolled_out(w)]
    if not waiting:
        names = ", ".join(sorted(w["metadata"]["name"] for w in workloads)) or "no workloads"
        return Readiness(True, f"all workloads available ({names})")
    for workload in waiting:
        condition = _replica_failure(workload)
        if condition is not None:
            message = str(condition.get("message") or condition.get("reason") or "cannot create pods")
            name = workload["metadata"]["name"]
            return Readiness(False, f"{name}: {message}", stuck=True, replica_failure=message)
    done = {workload_of(w) for w in workloads if rolled_out(w)}
    problems = _pod_problems([pod for pod in pods if _owner(pod) not in done])
    reasons = [problem.text for problem in problems]
    if not reasons:
        names = ", ".join(sorted(w["metadata"]["name"] for w in waiting))
        reasons.append(f"waiting for {names} to become available")
    return Readiness(False, "; ".join(reasons[:5]), stuck=any(problem.stuck for problem in problems))


@dataclass(frozen=True, slots=True)
class Blocker:
    """One workload that has not rolled out, and why (``RolloutFailed``'s details)."""

    workload: str  # Kind/name
    reason: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"workload": self.workload, "reason": self.reason, "message": self.message}

    def __str__(self) -> str:
        return f"{self.workload}: {self.reason}" + (f" ({self.message})" if self.message else "")


def _progress(workload: dict[str, Any]) -> str:
    """What the workload's status counts say, when its pods say nothing."""
    spec, status = workload.get("spec") or {}, workload.get("status") or {}
    if not _observed(workload):
        return "the controller has not acted on this generation yet"
    kind = workload.get("kind")
    if kind == "Job":
        wanted = _wanted(spec, "completions")
        return f"{_count(status, 'succeeded')} of {wanted} completed, {_count(status, 'active')} running"
    if kind == "DaemonSet":
        desired = _count(status, "desiredNumberScheduled")
        return (
            f"{_count(status, 'updatedNumberScheduled')} of {desired} updated, "
            f"{_count(status, 'numberAvailable')} available"
        )
    wanted = _wanted(spec, "replicas")
    ready = "readyReplicas" if kind == "StatefulSet" else "availableReplicas"
    return (
        f"{_count(status, 'updatedReplicas')} of {wanted} updated, "
        f"{_count(status, ready)} {'ready' if kind == 'StatefulSet' else 'available'}"
    )


def blockers(workloads: list[dict[str, Any]], pods: list[dict[str, Any]]) -> list[Blocker]:
    """Each workload that has not rolled out (failed Jobs first), with the reason its pods give."""
    found: list[Blocker] = []
    for workload in sorted(workloads, key=lambda w: job_failure(w) is None):
        if rolled_out(workload):
            continue
        name = workload_of(workload)
        problems = _pod_problems([pod for pod in pods if _owner(pod) == name])
        condition = job_failure(workload) or _replica_failure(workload) or deployment_stalled(workload)
        if condition is not None:
            said = str(condition.get("message") or "")
            message = "; ".join(filter(None, [said, *(p.text for p in problems[:3])]))
            found.append(Blocker(name, str(condition.get("reason") or condition["type"]), message))
        elif problems:
            found.append(Blocker(name, problems[0].reason, "; ".join(p.text for p in problems[:3])))
        else:
            found.append(Blocker(name, "NotRolledOut", _progress(workload)))
    return found


def _restarts(pods: list[dict[str, Any]]) -> list[_Problem]:
    found = []
    for pod in pods:
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            count = int(container.get("restartCount") or 0)
            last = (container.get("lastState") or {}).get("terminated") or {}
            if count and (container.get("state") or {}).get("running"):
                code = f", last exit code {last['exitCode']}" if last.get("exitCode") is not None else ""
                times = "once" if count == 1 else f"{count} times"
                text = f"{pod['metadata']['name']}/{container['name']}: restarted {times}{code}"
                found.append(_Problem("Restarting", text))
    return found


def describe_pod(pod: dict[str, Any]) -> PodInfo:
    status = pod.get("status") or {}
    specs = {str(c.get("name")): c for c in (pod.get("spec") or {}).get("containers") or []}
    statuses = {str(c.get("name")): c for c in status.get("containerStatuses") or []}
    containers = []
    # In the spec's order, so a container not started yet has its row too.
    for name in [*specs, *(n for n in statuses if n not in specs)]:
        spec, container = specs.get(name, {}), statuses.get(name)
        requests, limits = describing.resources(spec)
        details: dict[str, Any] = {
            "image": str((container or spec).get("image") or ""),
            "probes": describing.probes(spec),
            "requests": requests,
            "limits": limits,
            "env": describing.environment(spec),
        }
        if container is None:
            containers.append(
                ContainerInfo(name=name, state="waiting", ready=False, reason="not started", **details)
            )
            continue
        state = container.get("state") or {}
        kind = next((key for key in ("running", "waiting", "terminated") if state.get(key)), "waiting")
        detail = state.get(kind) or {}
        reason = str(detail.get("reason") or "")
        if kind == "terminated":
            reason = f"{reason or 'exited'} (code {detail.get('exitCode')})"
        containers.append(
            ContainerInfo(
                name=name,
                state=kind,
                ready=bool(container.get("ready")),
                restarts=int(container.get("restartCount") or 0),
                reason=reason,
                image_id=describing.image_digest(container),
                last_termination=describing.last_termination(container),
                **details,
            )
        )
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
        first_time=str(event.get("firstTimestamp") or event.get("eventTime") or ""),
    )
