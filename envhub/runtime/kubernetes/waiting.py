"""Waiting for the cluster to catch up, on watches, with a heartbeat while nothing happens.

Every wait here is one watch request for its whole duration (read on a thread
of its own, see :class:`rest.EventStream`), reopened only if the server ends it
early. What is waited for is decided from the watch events' objects
themselves: nothing is listed again per event.

* :func:`wait_quota_counted`: a new ResourceQuota is enforced only once the
  quota controller has counted usage (v1.20 admission ignores a quota whose
  ``status.hard`` is empty); workloads applied before that would escape it.
* :class:`RolloutWait`: the workloads an apply wrote (Deployments,
  StatefulSets, DaemonSets, Jobs), until all have rolled out, on one watch per
  kind that still has something to wait for (:class:`Watchers`). Only when one
  stays unavailable are the pods listed, once, to say why (image pull, crash
  loop, pending), and again at most every few seconds, less often the longer
  it takes.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from kubernetes.client import ApiClient

from envhub.errors import EnvhubError, NotReady, RolloutFailed, RuntimeFailure
from envhub.runtime.base import ProgressReporter
from envhub.runtime.kubernetes.errors import quota_error
from envhub.runtime.kubernetes.readiness import (
    Readiness,
    blockers,
    deployment_stalled,
    explain,
    job_failure,
    rolled_out,
    workload_of,
)
from envhub.runtime.kubernetes.rest import EventStream, Query, StreamEnded, WatchExpired

log = logging.getLogger(__name__)

# Unavailable this long after the wait began: list the pods to say why.
EXPLAIN_AFTER = 2.0
# ...and again no sooner than this after the last explanation, twice as long
# each time up to the maximum: a long wait is explained ~10 times, not on every
# event. (The last word is always current: a final list when the wait gives up.)
EXPLAIN_EVERY = 5.0
EXPLAIN_EVERY_MAX = 30.0


class Watcher:
    """Events of one collection until a deadline, resumed if the server ends the watch early.

    From ``version`` when given (events after it), else from the current state
    (the server first sends every existing object as ``ADDED``). A version too
    old to resume from (410) starts over from the current state.
    """

    def __init__(
        self,
        api: ApiClient,
        action: str,
        path: str,
        *,
        deadline: float,
        query: Query = (),
        version: str | None = None,
        wake: threading.Event | None = None,
    ) -> None:
        self.api, self.action, self.path, self.query = api, action, path, list(query)
        self.deadline = deadline
        self.version = version or None
        self.wake = wake
        self.expired = False  # set when a 410 made it start over from the current state
        self._stream: EventStream | None = None
        self._opened_at = 0.0

    def _open(self) -> EventStream:
        query = list(self.query)
        if self.version:
            query.append(("resourceVersion", self.version))
        seconds = math.ceil(max(1.0, self.deadline - time.monotonic()))
        self._opened_at = time.monotonic()
        return EventStream(self.api, self.action, self.path, query=query, seconds=seconds, wake=self.wake)

    @property
    def reopen_at(self) -> float:
        """When a watch the server ended may be opened again (never in a tight loop); inf while open."""
        if self._stream is not None:
            return math.inf
        return self._opened_at + 1.0 if self._opened_at else 0.0

    def next(self, timeout: float) -> dict[str, Any] | None:
        """The next event within ``timeout`` seconds, else None."""
        until = time.monotonic() + timeout
        while True:
            if self._stream is None:
                self._stream = self._open()
            try:
                event = self._stream.next(max(0.0, until - time.monotonic()))
            except EnvhubError:
                raise  # the server refused the watch: the caller's to handle
            except Exception as ended:  # ended by the server, expired, or the connection dropped
                self._stream.close()
                self._stream = None
                if isinstance(ended, WatchExpired):
                    self.version = None
                    self.expired = True
                elif not isinstance(ended, StreamEnded):
                    log.debug("%s: watch lost (%s); resuming", self.action, ended)
                if time.monotonic() - self._opened_at < 1.0:
                    time.sleep(min(1.0, max(0.0, until - time.monotonic())))  # no tight reopen loop
                if time.monotonic() >= min(until, self.deadline):
                    return None
                continue
            if event is not None:
                version = ((event.get("object") or {}).get("metadata") or {}).get("resourceVersion")
                self.version = str(version) if version else self.version
            return event

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class Watchers:
    """Events of several collections, as they come: a :class:`Watcher` each, one waiter for all.

    Each stream's reader wakes the waiter (``wake``), so a wait over several
    kinds is still one watch request per kind and blocks in one place.
    """

    def __init__(self, api: ApiClient, collections: Sequence[tuple[str, str]], *, deadline: float) -> None:
        self.wake = threading.Event()
        self.watchers = [
            Watcher(api, action, path, deadline=deadline, wake=self.wake) for action, path in collections
        ]
        self._turn = 0  # who is asked first, in turn: one busy collection cannot starve the others

    def next(self, timeout: float) -> dict[str, Any] | None:
        """The next event of any collection within ``timeout`` seconds, else None."""
        until = time.monotonic() + timeout
        count = len(self.watchers)
        while True:
            self.wake.clear()  # before looking: what arrives after sets it again
            now = time.monotonic()
            for offset in range(count):
                watcher = self.watchers[(self._turn + offset) % count]
                if now < watcher.reopen_at < math.inf:
                    continue  # ended just after it opened: not again yet
                event = watcher.next(0.0)
                if event is not None:
                    self._turn = (self._turn + offset + 1) % count
                    return event
            now = time.monotonic()
            if now >= until:
                return None
            reopen = min((watcher.reopen_at for watcher in self.watchers), default=math.inf)
            self.wake.wait(max(0.0, min(until, reopen) - now))

    def close(self) -> None:
        for watcher in self.watchers:
            watcher.close()

    def __enter__(self) -> Watchers:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def quota_counted(quota: dict[str, Any]) -> bool:
    wanted = set(((quota.get("spec") or {}).get("hard") or {}).keys())
    status = quota.get("status") or {}
    return wanted <= set((status.get("hard") or {}).keys()) and wanted <= set(
        (status.get("used") or {}).keys()
    )


def wait_quota_counted(
    api: ApiClient,
    namespace: str,
    quota: dict[str, Any],
    progress: ProgressReporter,
    *,
    timeout: float,
    heartbeat: float,
) -> None:
    """Block until the quota controller has counted ``quota`` (as its apply returned it).

    Re-runs find the status in the apply response and make no request at all.
    """
    if quota_counted(quota):
        return
    deadline = time.monotonic() + timeout
    name = quota["metadata"]["name"]
    with Watcher(
        api,
        f"watching quota {name}",
        f"/api/v1/namespaces/{namespace}/resourcequotas",
        query=[("fieldSelector", f"metadata.name={name}")],
        version=str(quota["metadata"].get("resourceVersion") or ""),
        deadline=deadline,
    ) as events:
        while not quota_counted(quota):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise NotReady(
                    f"the quota of {namespace} is not in force yet (its usage is not counted)",
                    details={"namespace": namespace},
                )
            progress.heartbeat()
            event = events.next(min(remaining, heartbeat))
            if event is not None and event["type"] in ("ADDED", "MODIFIED"):
                quota = event["object"]


# Where each kind an apply waits for is watched (readiness.WORKLOAD_KINDS).
_COLLECTIONS = {
    "Deployment": "/apis/apps/v1/namespaces/{namespace}/deployments",
    "StatefulSet": "/apis/apps/v1/namespaces/{namespace}/statefulsets",
    "DaemonSet": "/apis/apps/v1/namespaces/{namespace}/daemonsets",
    "Job": "/apis/batch/v1/namespaces/{namespace}/jobs",
}


class RolloutWait:
    """Until the workloads an apply wrote have rolled out, judged from watch events.

    ``workloads`` are the apply responses (Deployments, StatefulSets,
    DaemonSets, Jobs): those that already say rolled out (a re-run) need no
    request at all, and only the kinds that still have something to wait for
    are watched, one watch each. ``list_pods`` is called only to explain a
    workload that is slow to roll out.

    A Job that fails raises :class:`RolloutFailed` at once: it will not run
    again. So does, for a release with a deadline (``strict``), a Deployment
    whose own progress deadline (``progressDeadlineSeconds``) has passed: its
    controller has given up on the rollout. When ``timeout`` passes, a release
    with a deadline fails with :class:`RolloutFailed` naming each workload and
    why; otherwise it is :class:`NotReady`, and the job tries again later.
    """

    def __init__(
        self,
        api: ApiClient,
        namespace: str,
        workloads: list[dict[str, Any]],
        *,
        list_pods: Callable[[], list[dict[str, Any]]],
        timeout: float,
        heartbeat: float,
        strict: bool = False,
    ) -> None:
        self.api, self.namespace = api, namespace
        self.state = {workload_of(w): w for w in workloads}
        self.list_pods = list_pods
        self.timeout, self.heartbeat, self.strict = timeout, heartbeat, strict
        self.pods: list[dict[str, Any]] | None = None  # the last explanation's pods
        self.explained_at: float | None = None
        self.explain_every = EXPLAIN_EVERY

    @property
    def workloads(self) -> list[str]:
        """``Kind/name`` of each workload waited for, in the order they were applied."""
        return list(self.state)

    def readiness(self) -> Readiness:
        failed = {name for name, workload in self.state.items() if job_failure(workload)}
        if failed:
            raise self._failure("a Job failed", only=failed)
        if self.strict:
            stalled = {name for name, workload in self.state.items() if deployment_stalled(workload)}
            if stalled:
                headline = "no progress within the Deployment's progressDeadlineSeconds"
                raise self._failure(headline, only=stalled)
        readiness = explain(list(self.state.values()), self.pods or [])
        if readiness.replica_failure and "exceeded quota" in readiness.replica_failure:
            raise quota_error(readiness.replica_failure, action="starting the workloads")
        if readiness.stuck:
            if self.strict:
                raise self._failure("workloads cannot start")
            raise RuntimeFailure(f"workloads cannot start: {readiness.message}")
        return readiness

    def _failure(self, headline: str, *, only: set[str] | None = None) -> RolloutFailed:
        """What did not roll out, each with why, from pods as of now."""
        if self.explained_at is None or time.monotonic() - self.explained_at > 1.0:
            self.pods = self.list_pods()
            self.explained_at = time.monotonic()
        found = [
            blocker
            for blocker in blockers(list(self.state.values()), self.pods or [])
            if only is None or blocker.workload in only
        ]
        return RolloutFailed(
            f"{headline}: " + "; ".join(str(blocker) for blocker in found[:5]),
            details={"namespace": self.namespace, "workloads": [blocker.as_dict() for blocker in found]},
        )

    def _explain(self) -> Readiness:
        self.pods = self.list_pods()
        self.explained_at = time.monotonic()
        return self.readiness()

    def run(self, progress: ProgressReporter) -> Readiness:
        readiness = self.readiness()
        if readiness.ready:
            return readiness
        started = time.monotonic()
        deadline = started + self.timeout
        beat = started - self.heartbeat  # one right away: the applies took a while too
        kinds = list(dict.fromkeys(w["kind"] for w in self.state.values() if not rolled_out(w)))
        collections = [
            (f"watching {kind}s in {self.namespace}", _COLLECTIONS[kind].format(namespace=self.namespace))
            for kind in kinds
        ]
        with Watchers(self.api, collections, deadline=deadline) as events:
            while True:
                now = time.monotonic()
                if now >= deadline:
                    if self.strict:
                        raise self._failure(f"not rolled out within {self.timeout:g}s")
                    if self.explained_at is None or now - self.explained_at > 1.0:
                        readiness = self._explain()  # say why, as of now
                    raise NotReady(
                        f"not available yet: {readiness.message}", details={"namespace": self.namespace}
                    )
                if now - beat >= self.heartbeat:
                    progress.heartbeat()
                    beat = now
                explain_at = started + EXPLAIN_AFTER
                if self.explained_at is not None:
                    explain_at = self.explained_at + self.explain_every
                if now >= explain_at:
                    if self.explained_at is not None:
                        self.explain_every = min(EXPLAIN_EVERY_MAX, self.explain_every * 2)
                    readiness = self._explain()
                    continue
                wait = min(deadline, beat + self.heartbeat, explain_at) - now
                event = events.next(max(0.05, wait))
                if event is None:
                    continue
                obj = event.get("object") or {}
                name = workload_of(obj)
                if name not in self.state:
                    continue  # not one this apply wrote
                if event["type"] == "DELETED":
                    del self.state[name]
                elif event["type"] in ("ADDED", "MODIFIED"):
                    self.state[name] = obj
                readiness = self.readiness()
                if readiness.ready:
                    return readiness
