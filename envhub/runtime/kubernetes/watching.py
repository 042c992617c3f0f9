"""Feeding environment status from the cluster with watches, not polling.

One watch over every envhub-managed Deployment in the cluster. Each event
re-evaluates the environment it belongs to and reports it to a handler. A watch
that ends (timeout, dropped connection) resumes from the last resourceVersion;
one that is too old (410 Gone) relists first. While the cluster cannot be
reached, the handler gets a ``degraded`` status with the ``cluster_unreachable``
condition, so environments keep their last known phase.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from kubernetes import watch
from kubernetes.client import ApiClient, AppsV1Api
from kubernetes.client.exceptions import ApiException

from envhub.domain.kube import is_namespace_of
from envhub.runtime.base import RuntimeState, RuntimeStatus, StatusHandler
from envhub.runtime.kubernetes.errors import kube_json, translate
from envhub.runtime.kubernetes.readiness import deployment_ready

log = logging.getLogger(__name__)

MANAGED = "app.kubernetes.io/managed-by=envhub"
ENV_LABEL = "envhub.dev/environment"


class DeploymentWatcher:
    def __init__(self, api: ApiClient, handler: StatusHandler, *, window: int = 60) -> None:
        self.api = api
        self.apps = AppsV1Api(api)
        self.handler = handler
        self.window = window
        # environment id -> deployment name -> ready?
        self.state: dict[int, dict[str, bool]] = {}
        self.resource_version: str | None = None
        self.reachable = True

    def _environment_of(self, obj: dict[str, Any]) -> int | None:
        """The environment a Deployment belongs to: by its label, in that environment's namespace."""
        meta = obj.get("metadata") or {}
        value = str((meta.get("labels") or {}).get(ENV_LABEL, ""))
        if not value.isdigit() or not is_namespace_of(str(meta.get("namespace", "")), int(value)):
            return None
        return int(value)

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

    def _send(self, environment: int, status: RuntimeStatus) -> None:
        try:
            self.handler(environment, status)
        except Exception:
            log.exception("status handler failed for environment %s", environment)

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

    def run(self, stop: threading.Event) -> None:
        backoff = 1.0
        while not stop.is_set():
            try:
                if not self.reachable:
                    self.resource_version = None  # state may have moved on while we were away
                self.step()
                backoff = 1.0
            except Exception as exc:
                error = translate(exc, action="watching environments")
                if error.retryable and self.reachable:
                    self.reachable = False
                    for environment in list(self.state):
                        self._send(
                            environment,
                            RuntimeStatus(
                                RuntimeState.degraded, error.message, details={"condition": error.code}
                            ),
                        )
                log.warning("status watch interrupted (%s); resuming in %.0fs", error.message, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
