"""Feeding environment status from the cluster with watches, not polling.

One watch over every envhub-managed Deployment in the cluster. Each event
re-evaluates the environment it belongs to and reports it to a handler. A watch
that ends (timeout, dropped connection) resumes from the last resourceVersion;
one that is too old (410 Gone) relists first. While the cluster cannot be
reached, the handler gets a ``degraded`` status with the ``cluster_unreachable``
condition, so environments keep their last known phase.

A second watch, over envhub's namespaces, reports the end of a teardown: the
namespace controller has finalized a namespace envhub deleted, which no job
waits for (:class:`NamespaceWatcher`).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from kubernetes import watch
from kubernetes.client import ApiClient, AppsV1Api, CoreV1Api
from kubernetes.client.exceptions import ApiException

from envhub.domain.kube import is_namespace_of
from envhub.errors import EnvhubError
from envhub.runtime.base import REMOVED, RuntimeState, RuntimeStatus, StatusHandler
from envhub.runtime.kubernetes.errors import kube_json, translate
from envhub.runtime.kubernetes.readiness import deployment_ready

log = logging.getLogger(__name__)

MANAGED = "app.kubernetes.io/managed-by=envhub"
ENV_LABEL = "envhub.dev/environment"


class _Resuming:
    """A watch that goes on until stopped: resumed after it ends, relisted after a 410 or an outage."""

    what = "the cluster"

    def __init__(self, handler: StatusHandler, *, window: int) -> None:
        self.handler = handler
        self.window = window
        self.resource_version: str | None = None
        self.reachable = True

    def step(self) -> None:
        """One watch window (relisting first when ``resource_version`` is None)."""
        raise NotImplementedError

    def lost(self, error: EnvhubError) -> None:
        """The cluster stopped answering (called once per outage)."""

    def _send(self, environment: int, status: RuntimeStatus) -> None:
        try:
            self.handler(environment, status)
        except Exception:
            log.exception("status handler failed for environment %s", environment)

    def run(self, stop: threading.Event) -> None:
        backoff = 1.0
        while not stop.is_set():
            try:
                if not self.reachable:
                    self.resource_version = None  # state may have moved on while we were away
                self.step()
                backoff = 1.0
            except Exception as exc:
                error = translate(exc, action=f"watching {self.what}")
                if error.retryable and self.reachable:
                    self.reachable = False
                    self.lost(error)
                log.warning("%s watch interrupted (%s); resuming in %.0fs", self.what, error.message, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)


def _environment_of(meta: dict[str, Any], namespace: str) -> int | None:
    """The environment an object belongs to: by its label, in (or being) that environment's namespace."""
    value = str((meta.get("labels") or {}).get(ENV_LABEL, ""))
    if not value.isdigit() or not is_namespace_of(namespace, int(value)):
        return None
    return int(value)


class DeploymentWatcher(_Resuming):
    what = "environments"

    def __init__(self, api: ApiClient, handler: StatusHandler, *, window: int = 60) -> None:
        super().__init__(handler, window=window)
        self.apps = AppsV1Api(api)
        # environment id -> deployment name -> ready?
        self.state: dict[int, dict[str, bool]] = {}

    def _environment_of(self, obj: dict[str, Any]) -> int | None:
        meta = obj.get("metadata") or {}
        return _environment_of(meta, str(meta.get("namespace", "")))

    def relist(self) -> None:
        listing = kube_json(
            "listing envhub Deployments", self.apps.list_deployment_for_all_namespaces, label_selector=MANAGED
        )
        fresh: dict[int, dict[str, bool]] = {}
        for obj in listing.get("items", []):
            environment = self._environment_of(obj)
            if environment is not None:
                fresh.setdefault(environment, {})[obj["metadata"]["name"]] = deployment_ready(obj)
        for environment in set(fresh) | set(self.state):
            # After an outage every environment was reported degraded: report
            # each one again, even when its Deployments did not change.
            if not self.reachable or fresh.get(environment) != self.state.get(environment):
                self._report(environment, fresh.get(environment, {}))
        self.state = fresh
        self.resource_version = str(listing["metadata"].get("resourceVersion", "")) or None
        self.reachable = True

    def _report(self, environment: int, deployments: dict[str, bool]) -> None:
        waiting = sorted(name for name, ready in deployments.items() if not ready)
        if not deployments:
            status = RuntimeStatus(RuntimeState.absent, "no workloads")
        elif waiting:
            status = RuntimeStatus(RuntimeState.starting, f"waiting for {', '.join(waiting)}")
        else:
            status = RuntimeStatus(RuntimeState.ready, "all workloads available")
        self._send(environment, status)

    def step(self) -> None:
        """One watch window: relist when needed, then apply events until it ends."""
        if self.resource_version is None:
            self.relist()
        watcher = watch.Watch()
        try:
            for event in watcher.stream(
                self.apps.list_deployment_for_all_namespaces,
                label_selector=MANAGED,
                resource_version=self.resource_version,
                timeout_seconds=self.window,
            ):
                obj = event["raw_object"]
                self.resource_version = obj["metadata"].get("resourceVersion", self.resource_version)
                environment = self._environment_of(obj)
                if environment is None:
                    continue
                deployments = dict(self.state.get(environment, {}))
                if event["type"] == "DELETED":
                    deployments.pop(obj["metadata"]["name"], None)
                else:
                    deployments[obj["metadata"]["name"]] = deployment_ready(obj)
                if deployments != self.state.get(environment):
                    self.state[environment] = deployments
                    self._report(environment, deployments)
        except ApiException as exc:
            if exc.status == 410:  # our resourceVersion is too old: start over
                self.resource_version = None
                return
            raise
        finally:
            watcher.stop()

    def lost(self, error: EnvhubError) -> None:
        for environment in list(self.state):
            self._send(
                environment,
                RuntimeStatus(RuntimeState.degraded, error.message, details={"condition": error.code}),
            )


class NamespaceWatcher(_Resuming):
    """Reports each envhub namespace the namespace controller has finalized: an ``absent``
    status with ``details[REMOVED]``, the end of a teardown that no job waits for.

    Only deletions are reported; a relist (at the start, after a 410 or an
    outage) starts from the current state, so a namespace that went while
    nothing watched is not reported: the teardown's own retry finds it gone.
    """

    what = "namespaces"

    def __init__(self, api: ApiClient, handler: StatusHandler, *, window: int = 60) -> None:
        super().__init__(handler, window=window)
        self.core = CoreV1Api(api)

    def step(self) -> None:
        if self.resource_version is None:
            listing = kube_json(
                "listing envhub namespaces", self.core.list_namespace, label_selector=MANAGED, limit=1
            )
            self.resource_version = str(listing["metadata"].get("resourceVersion", "")) or None
            self.reachable = True
        watcher = watch.Watch()
        try:
            for event in watcher.stream(
                self.core.list_namespace,
                label_selector=MANAGED,
                resource_version=self.resource_version,
                timeout_seconds=self.window,
            ):
                meta = event["raw_object"]["metadata"]
                self.resource_version = meta.get("resourceVersion", self.resource_version)
                name = str(meta.get("name", ""))
                environment = _environment_of(meta, name)
                if event["type"] == "DELETED" and environment is not None:
                    self._send(
                        environment,
                        RuntimeStatus(
                            RuntimeState.absent,
                            f"namespace {name} is gone",
                            details={REMOVED: "namespace", "namespace": name},
                        ),
                    )
        except ApiException as exc:
            if exc.status == 410:
                self.resource_version = None
                return
            raise
        finally:
            watcher.stop()
