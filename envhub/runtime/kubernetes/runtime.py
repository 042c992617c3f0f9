"""The Kubernetes runtime: every environment in its own isolated namespace.

``apply`` renders the environment (``domain/kube``), server-side applies each
object with envhub's field manager (re-running changes nothing), prunes what the
spec no longer has, then watches the namespace's Deployments until they are
available. ``destroy`` deletes the namespace and watches until it is gone.
Requests are the ones needed: no re-reading of what was just written, watches
instead of polling. Reads return plain dicts (see ``errors.kube_json``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from kubernetes import watch
from kubernetes.client import ApiClient, AppsV1Api, CoreV1Api, NetworkingV1Api, V1DeleteOptions

from envhub.config import get_settings
from envhub.domain.kube import (
    DEFAULT_INGRESS_NAMESPACES,
    WORKLOAD_ACCOUNT,
    PlatformLimits,
    clamp_quota,
    namespace_for,
    public_endpoint,
    render_environment,
)
from envhub.domain.specs import EnvironmentTarget
from envhub.errors import EnvhubError, NotFound, NotReady, RuntimeFailure
from envhub.runtime.base import (
    Endpoint,
    Inspection,
    ProgressReporter,
    RuntimeState,
    RuntimeStatus,
    StatusHandler,
    WorkloadCredentials,
)
from envhub.runtime.kubernetes.credentials import request_token
from envhub.runtime.kubernetes.discovery import Applier
from envhub.runtime.kubernetes.errors import kube_call, kube_json, quota_error, translate
from envhub.runtime.kubernetes.readiness import Readiness, describe_event, describe_pod, explain, recent
from envhub.runtime.kubernetes.streams import EXEC_PROTOCOLS, KubernetesExecSession, follow_log
from envhub.runtime.kubernetes.watching import DeploymentWatcher

log = logging.getLogger(__name__)

MANAGED = "app.kubernetes.io/managed-by=envhub"
ENV_LABEL = "envhub.dev/environment"
_ISOLATION_KINDS = {"ResourceQuota", "LimitRange", "NetworkPolicy", "ServiceAccount", "Role", "RoleBinding"}


class KubernetesRuntime:
    name = "kubernetes"
    provision_plan: tuple[tuple[str, str], ...] = (
        ("namespace", "Create namespace"),
        ("isolation", "Apply quota, limits, network policy and RBAC"),
        ("workloads", "Apply workloads"),
        ("health", "Wait for workloads to become available"),
        ("publish", "Publish URL"),
    )
    teardown_plan: tuple[tuple[str, str], ...] = (
        ("stop", "Delete namespace"),
        ("cleanup", "Wait until it is gone"),
    )
    pushes_status = True

    def __init__(
        self,
        api: ApiClient,
        *,
        limits: PlatformLimits | None = None,
        ingress_namespaces: tuple[str, ...] = DEFAULT_INGRESS_NAMESPACES,
        ready_timeout: float = 180.0,
        exec_protocols: tuple[str, ...] = EXEC_PROTOCOLS,
        heartbeat_interval: float | None = None,
    ) -> None:
        self.api = api
        self.core = CoreV1Api(api)
        self.apps = AppsV1Api(api)
        self.networking = NetworkingV1Api(api)
        self.applier = Applier(api)
        self.limits = limits or PlatformLimits()
        self.ingress_namespaces = ingress_namespaces
        self.ready_timeout = ready_timeout
        self.exec_protocols = exec_protocols
        # Long waits block on watches of at most this long, then heartbeat: well
        # inside the time after which the reconciler takes a silent job as lost.
        if heartbeat_interval is None:
            heartbeat_interval = min(5.0, max(1.0, get_settings().job_stale_after / 3))
        self.heartbeat_interval = heartbeat_interval

    def _namespace_of(self, environment_id: int) -> str | None:
        found = kube_json(
            "finding the environment's namespace",
            self.core.list_namespace,
            label_selector=f"{MANAGED},{ENV_LABEL}={environment_id}",
        )
        names = sorted(str(item["metadata"]["name"]) for item in found.get("items", []))
        return names[0] if names else None

    # -- apply ---------------------------------------------------------------

    def apply(self, target: EnvironmentTarget, *, progress: ProgressReporter) -> RuntimeStatus:
        namespace = namespace_for(target)
        objects = render_environment(
            target,
            namespace=namespace,
            limits=self.limits,
            ingress_namespaces=self.ingress_namespaces,
            is_namespaced=self.applier.is_namespaced,
        )
        _quota, clamped = clamp_quota(target.spec.quota, self.limits)
        groups: dict[str, list[dict[str, Any]]] = {"namespace": [], "isolation": [], "workloads": []}
        for obj in objects:
            groups[_group(obj)].append(obj)
        for key, members in groups.items():
            progress.begin(key)
            for obj in members:
                applied = self.applier.apply(obj)
                if key == "isolation" and obj["kind"] == "ResourceQuota":
                    self._wait_quota_counted(namespace, applied, progress)
            note = ""
            if key == "isolation" and clamped:
                note = f" (quota capped at the platform maximum: {', '.join(clamped)})"
            progress.finish(key, f"{len(members)} object(s) applied in {namespace}{note}")
        self._prune(namespace, groups["workloads"] + groups["isolation"])
        progress.begin("health", f"watching Deployments in {namespace}")
        readiness = self._wait_available(namespace, progress)
        progress.finish("health", readiness.message)
        public = public_endpoint(target.spec, namespace=namespace)
        return RuntimeStatus(
            RuntimeState.ready,
            readiness.message,
            generation=target.generation,
            endpoint=Endpoint(public.host, public.port) if public else None,
            details={"namespace": namespace},
        )

    def _wait_quota_counted(self, namespace: str, quota: dict[str, Any], progress: ProgressReporter) -> None:
        """Block until the quota controller has counted the namespace's usage.

        Until it has, quota admission ignores the quota (it only enforces the
        resources listed in ``status.hard``), so workloads applied right after a
        new quota would escape it. Re-runs see the status in the apply response
        and do not wait.
        """
        deadline = time.monotonic() + min(self.ready_timeout, 30.0)
        selector = f"metadata.name={quota['metadata']['name']}"
        while not _quota_counted(quota):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise NotReady(
                    f"the quota of {namespace} is not in force yet (its usage is not counted)",
                    details={"namespace": namespace},
                )
            progress.heartbeat()
            event = self._wait_for_event(
                self.core.list_namespaced_resource_quota,
                namespace,
                field_selector=selector,
                version=str(quota["metadata"].get("resourceVersion", "")),
                seconds=min(remaining, self.heartbeat_interval),
            )
            if event is not None and event["type"] in ("ADDED", "MODIFIED"):
                quota = event["raw_object"]

    def _prune(self, namespace: str, wanted: list[dict[str, Any]]) -> None:
        """Delete objects envhub made earlier that the spec no longer has."""
        keep = {(obj["kind"], obj["metadata"]["name"]) for obj in wanted}
        for kind, lister, deleter in (
            ("Deployment", self.apps.list_namespaced_deployment, self.apps.delete_namespaced_deployment),
            ("Service", self.core.list_namespaced_service, self.core.delete_namespaced_service),
            # The project's secrets: gone from envhub, gone from the namespace.
            ("Secret", self.core.list_namespaced_secret, self.core.delete_namespaced_secret),
            (
                "NetworkPolicy",
                self.networking.list_namespaced_network_policy,
                self.networking.delete_namespaced_network_policy,
            ),
        ):
            found = kube_json(f"listing {kind}s", lister, namespace, label_selector=MANAGED)
            for item in found.get("items", []):
                name = item["metadata"]["name"]
                if (kind, name) not in keep:
                    with contextlib.suppress(NotFound):
                        # As JSON: the client cannot deserialize the Status a
                        # v1.20 apiserver answers to a Service deletion.
                        kube_json(f"deleting {kind} {name}", deleter, name, namespace)

    def _readiness(self, namespace: str) -> tuple[Readiness, str]:
        deployments = kube_json("reading Deployments", self.apps.list_namespaced_deployment, namespace)
        items = deployments.get("items", [])
        readiness = explain(items, [])
        if not readiness.ready:
            pods = kube_json("reading pods", self.core.list_namespaced_pod, namespace)
            readiness = explain(items, pods.get("items", []))
        return readiness, str(deployments["metadata"].get("resourceVersion", ""))

    def _wait_available(self, namespace: str, progress: ProgressReporter) -> Readiness:
        deadline = time.monotonic() + self.ready_timeout
        readiness, version = self._readiness(namespace)
        while not readiness.ready:
            if readiness.replica_failure and "exceeded quota" in readiness.replica_failure:
                raise quota_error(readiness.replica_failure, action="starting the workloads")
            if readiness.stuck:
                raise RuntimeFailure(f"workloads cannot start: {readiness.message}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise NotReady(f"not available yet: {readiness.message}", details={"namespace": namespace})
            progress.heartbeat()
            # Block on a watch until a Deployment changes; the short window lets
            # pod-level reasons (image pull, crash loop) refresh the message.
            self._wait_for_event(
                self.apps.list_namespaced_deployment,
                namespace,
                version=version,
                seconds=min(remaining, self.heartbeat_interval),
            )
            readiness, version = self._readiness(namespace)
        return readiness

    @staticmethod
    def _wait_for_event(
        lister: Any, *args: Any, version: str, seconds: float, **kwargs: Any
    ) -> dict[str, Any] | None:
        """The first watch event within ``seconds`` (None: none came)."""
        watcher = watch.Watch()  # type: ignore[no-untyped-call]
        try:
            for event in watcher.stream(  # type: ignore[no-untyped-call]
                lister, *args, resource_version=version, timeout_seconds=max(1, int(seconds)), **kwargs
            ):
                return {"type": str(event["type"]), "raw_object": event["raw_object"]}
        except Exception as exc:  # a lost watch is resumed by the caller's next turn
            error = translate(exc, action="watching")
            if not error.retryable:
                log.debug("watch ended: %s", error.message)
        finally:
            watcher.stop()  # type: ignore[no-untyped-call]
        return None

    # -- credentials ---------------------------------------------------------

    def issue_credentials(self, environment_id: int, *, ttl_seconds: int) -> WorkloadCredentials:
        namespace = self._namespace_of(environment_id)
        if namespace is None:
            raise NotFound(f"environment {environment_id} has no namespace on this cluster")
        return request_token(
            self.core,
            namespace=namespace,
            account=WORKLOAD_ACCOUNT,
            ttl_seconds=ttl_seconds,
            server=str(self.api.configuration.host),
        )

    # -- status --------------------------------------------------------------

    def status(self, environment_id: int) -> RuntimeStatus:
        try:
            namespace = self._namespace_of(environment_id)
            if namespace is None:
                return RuntimeStatus(RuntimeState.absent, "no namespace")
            readiness, _ = self._readiness(namespace)
        except EnvhubError as exc:
            if exc.retryable:
                return RuntimeStatus(RuntimeState.degraded, exc.message, details={"condition": exc.code})
            raise
        state = RuntimeState.ready if readiness.ready else RuntimeState.starting
        return RuntimeStatus(state, readiness.message, details={"namespace": namespace})

    def watch(self, handler: StatusHandler, stop: threading.Event) -> None:
        DeploymentWatcher(self.api, handler).run(stop)

    def inspect(self, environment_id: int) -> Inspection:
        namespace = self._namespace_of(environment_id)
        if namespace is None:
            return Inspection()
        pods = kube_json("reading pods", self.core.list_namespaced_pod, namespace).get("items", [])
        events = kube_json("reading events", self.core.list_namespaced_event, namespace).get("items", [])
        return Inspection(
            pods=tuple(describe_pod(pod) for pod in sorted(pods, key=lambda p: str(p["metadata"]["name"]))),
            events=tuple(describe_event(event) for event in recent(events, 20)),
            location=namespace,
        )

    def endpoint(self, environment_id: int) -> Endpoint | None:
        return None  # public traffic reaches Kubernetes environments through their URL provider

    def managed_environments(self) -> set[int]:
        found = kube_json("listing envhub namespaces", self.core.list_namespace, label_selector=MANAGED)
        ids: set[int] = set()
        for item in found.get("items", []):
            value = str((item["metadata"].get("labels") or {}).get(ENV_LABEL, ""))
            if value.isdigit() and (item.get("status") or {}).get("phase") != "Terminating":
                ids.add(int(value))
        return ids

    # -- stop and destroy ----------------------------------------------------

    def stop(self, environment_id: int) -> None:
        namespace = self._namespace_of(environment_id)
        if namespace is None:
            return
        deployments = kube_json("reading Deployments", self.apps.list_namespaced_deployment, namespace)
        for deployment in deployments.get("items", []):
            kube_call(
                "scaling down",
                self.apps.patch_namespaced_deployment_scale,
                deployment["metadata"]["name"],
                namespace,
                {"spec": {"replicas": 0}},
            )

    def destroy(self, environment_id: int, *, progress: ProgressReporter) -> None:
        namespace = self._namespace_of(environment_id)
        if namespace is None:
            progress.skip("stop", "no namespace")
            progress.skip("cleanup", "nothing to remove")
            return
        progress.begin("stop", namespace)
        with contextlib.suppress(NotFound):
            kube_json(
                f"deleting namespace {namespace}",
                self.core.delete_namespace,
                namespace,
                body=V1DeleteOptions(propagation_policy="Background"),
            )
        progress.finish("stop", f"namespace {namespace} is terminating")
        progress.begin("cleanup", f"waiting for {namespace} to be finalized")
        self._wait_gone(namespace, progress)
        progress.finish("cleanup", f"namespace {namespace} is gone")

    def _wait_gone(self, namespace: str, progress: ProgressReporter) -> None:
        deadline = time.monotonic() + self.ready_timeout
        selector = f"metadata.name={namespace}"
        while time.monotonic() < deadline:
            listing = kube_json(
                "watching namespace deletion", self.core.list_namespace, field_selector=selector
            )
            if not listing.get("items"):
                return
            progress.heartbeat()
            event = self._wait_for_event(
                self.core.list_namespace,
                field_selector=selector,
                version=str(listing["metadata"].get("resourceVersion", "")),
                seconds=self.heartbeat_interval,
            )
            if event is not None and event["type"] == "DELETED":
                return
        raise NotReady(f"namespace {namespace} is still terminating", details={"namespace": namespace})

    # -- logs and exec -------------------------------------------------------

    def _pod(self, environment_id: int, container: str | None) -> tuple[str, str, str]:
        namespace = self._namespace_of(environment_id)
        if namespace is None:
            raise NotReady("the environment has no namespace yet")
        kwargs = {"label_selector": f"app.kubernetes.io/name={container}"} if container else {}
        pods = kube_json("finding a pod", self.core.list_namespaced_pod, namespace, **kwargs).get("items", [])
        running = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"] or pods
        if not running:
            raise NotReady("the environment has no pod yet")
        pod = sorted(running, key=lambda p: str(p["metadata"]["name"]))[0]
        names = [str(c["name"]) for c in pod["spec"]["containers"]]
        chosen = container if container in names else names[0]
        return namespace, str(pod["metadata"]["name"]), str(chosen)

    def logs(
        self,
        environment_id: int,
        *,
        follow: bool = False,
        tail: int | None = 200,
        container: str | None = None,
        since_seconds: int | None = None,
    ) -> Iterator[str]:
        namespace, pod, chosen = self._pod(environment_id, container)
        return follow_log(
            self.core,
            namespace=namespace,
            pod=pod,
            container=chosen,
            follow=follow,
            tail=tail,
            since_seconds=since_seconds,
        )

    def exec(
        self,
        environment_id: int,
        command: list[str] | None = None,
        *,
        tty: bool = True,
        container: str | None = None,
    ) -> KubernetesExecSession:
        namespace, pod, chosen = self._pod(environment_id, container)
        return KubernetesExecSession(
            self.core,
            namespace=namespace,
            pod=pod,
            container=chosen,
            command=command or ["/bin/sh", "-l"],
            tty=tty,
            protocols=self.exec_protocols,
        )


def _quota_counted(quota: dict[str, Any]) -> bool:
    wanted = set(((quota.get("spec") or {}).get("hard") or {}).keys())
    status = quota.get("status") or {}
    return wanted <= set((status.get("hard") or {}).keys()) and wanted <= set(
        (status.get("used") or {}).keys()
    )


def _group(obj: dict[str, Any]) -> str:
    kind = obj["kind"]
    if kind == "Namespace":
        return "namespace"
    if kind in _ISOLATION_KINDS and str(obj["metadata"]["name"]).startswith("envhub"):
        return "isolation"
    return "workloads"
