"""The Kubernetes runtime: every environment in its own isolated namespace.

``apply`` renders the environment (``domain/kube``), server-side applies each
object with envhub's field manager (re-running changes nothing), prunes what the
spec no longer has, then watches the workloads it applied (Deployments,
StatefulSets, DaemonSets, Jobs) until they have rolled out, failing by the
release's deadline when it has one. ``destroy`` deletes the namespace and
watches until it is gone.

Every request is one the job needs. Apply responses are the cluster's state
(status included), so nothing just written is read back: the Namespace's
response carries the record that pruning works from (``pruning.py``), the
quota's and the workloads' responses start their waits, and a re-run of an
unchanged, healthy environment is its applies and nothing else. Waits are one
watch each, never a poll (``waiting.py``). Reads return plain dicts.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes.client import (
    ApiClient,
    AppsV1Api,
    AuthenticationV1Api,
    CoreV1Api,
    CustomObjectsApi,
    V1DeleteOptions,
    VersionApi,
)
from websockets.asyncio.client import ClientConnection

from envhub.config import get_settings
from envhub.domain import browser
from envhub.domain.devcontainer import Workspace
from envhub.domain.kube import (
    DEFAULT_INGRESS_NAMESPACES,
    PUBLIC_ANNOTATION,
    SERVICES_ANNOTATION,
    WORKLOAD_ACCOUNT,
    Applied,
    EgressDenyList,
    PlatformLimits,
    applied,
    clamp_quota,
    is_namespace_of,
    namespace_for,
    render_environment,
)
from envhub.domain.kube import git_credentials as git_access
from envhub.domain.kube.browser import BrowserSidecar
from envhub.domain.kube.builds import BuilderSettings, plan_build
from envhub.domain.kube.cloudnative_pg import API_VERSION as CLUSTER_API
from envhub.domain.kube.cloudnative_pg import CLUSTER_KIND
from envhub.domain.kube.names import MANAGED_SERVICE_LABEL, SERVICE_LABEL
from envhub.domain.kube.network import ClusterNetwork
from envhub.domain.kube.workspace import (
    WORKSPACE,
    WorkspaceSettings,
    environment_endpoint,
)
from envhub.domain.kube.workspace_record import kept_workspace, pinned_commit, read_remote_env
from envhub.domain.kube.workspace_shell import with_remote_env
from envhub.domain.progress import PREPARE_STEPS
from envhub.domain.specs import EnvironmentKind, EnvironmentTarget
from envhub.errors import ClusterConflict, ClusterForbidden, EnvhubError, NotFound, NotReady
from envhub.runtime.base import (
    BackgroundState,
    Endpoint,
    Inspection,
    ProcessOutputChunk,
    ProgressReporter,
    RuntimeState,
    RuntimeStatus,
    StatusHandler,
    Usage,
    WorkloadCredentials,
)
from envhub.runtime.kubernetes import background, describing, dormancy
from envhub.runtime.kubernetes import devcontainer as dev
from envhub.runtime.kubernetes.apiserver import ApiServerAddresses
from envhub.runtime.kubernetes.builds import build_image
from envhub.runtime.kubernetes.credentials import request_token, review_token, server_trust
from envhub.runtime.kubernetes.discovery import Applier, Stored
from envhub.runtime.kubernetes.errors import kube_call, kube_json
from envhub.runtime.kubernetes.pruning import Inventory
from envhub.runtime.kubernetes.readiness import (
    WORKLOAD_KINDS,
    Readiness,
    describe_event,
    describe_pod,
    explain,
    recent,
)
from envhub.runtime.kubernetes.rest import request
from envhub.runtime.kubernetes.service_proxy import ServiceProxyTransport
from envhub.runtime.kubernetes.streams import EXEC_PROTOCOLS, KubernetesExecSession, follow_log
from envhub.runtime.kubernetes.waiting import RolloutWait, wait_quota_counted
from envhub.runtime.kubernetes.watching import DeploymentWatcher, NamespaceWatcher

METRICS_SOURCE = "metrics.k8s.io"

log = logging.getLogger(__name__)

MANAGED = "app.kubernetes.io/managed-by=envhub"
ENV_LABEL = "envhub.dev/environment"
# Objects of one wave applied at once (well inside the client's connection pool, 5 per CPU).
_APPLY_AT_ONCE = 8
# Built-in kinds that make or govern pods: applied as one wave, after everything their pods use
# (accounts, secrets, config, claims, services). None waits for another of them: each controller
# acts whenever its object appears, as when helm creates them one after another.
_POD_KINDS = frozenset({
    "Pod", "ReplicationController", "ReplicaSet", "Deployment", "StatefulSet", "DaemonSet",
    "HorizontalPodAutoscaler", "Job", "CronJob", "PodDisruptionBudget",
})  # fmt: skip
# Built-in kinds none of which needs another of them to exist first: applied as one wave. Not
# RoleBinding (the API server checks a binding against its Role, so the Role goes first) and not a
# ServiceAccount's token Secret (its account goes first, or the token controller deletes it).
_INDEPENDENT_KINDS = frozenset({
    ("v1", "ResourceQuota"), ("v1", "LimitRange"), ("networking.k8s.io/v1", "NetworkPolicy"),
    ("v1", "ServiceAccount"), ("rbac.authorization.k8s.io/v1", "Role"), ("v1", "Secret"),
    ("v1", "ConfigMap"), ("v1", "PersistentVolumeClaim"), ("v1", "Service"),
})  # fmt: skip
# The names of the threads a job applies with (the request log tells a job's requests by them).
APPLY_THREADS = "envhub-apply"
_ACCOUNT_TOKEN = "kubernetes.io/service-account-token"  # noqa: S105 (a Secret type, not a secret)
_ISOLATION_KINDS = {"ResourceQuota", "LimitRange", "NetworkPolicy", "ServiceAccount", "Role", "RoleBinding"}


class KubernetesRuntime:
    name = "kubernetes"
    provision_plan: tuple[tuple[str, str], ...] = (
        *PREPARE_STEPS,
        ("workloads", "Apply workloads"),
        ("health", "Wait for workloads to roll out"),
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
        deny: EgressDenyList | None = None,
        ready_timeout: float = 180.0,
        exec_protocols: tuple[str, ...] = EXEC_PROTOCOLS,
        heartbeat_interval: float | None = None,
        clusters: ClusterNetwork | None = None,
        browser: BrowserSidecar | None = None,
        browser_mode: str = "all",
        workspace: WorkspaceSettings | None = None,
        git_config: Path | None = None,
        allow_local_repos: bool = False,
        lifecycle_timeout: float = 600.0,
        builder: BuilderSettings | None = None,
    ) -> None:
        self.api = api
        # A Playwright sidecar in the public pod of every environment (ENVHUB_BROWSER=all), or of
        # those whose devcontainer.json lists envhub's browser feature ("feature"); None: never.
        self.browser = browser
        self.browser_mode = browser_mode
        # Development environments' workspaces (devcontainer.json): how they are made, how the
        # worker fetches the file (as it fetches deployment sources), how long a command may run.
        self.workspace = workspace or WorkspaceSettings()
        self.git_config = git_config
        self.allow_local_repos = allow_local_repos
        self.lifecycle_timeout = lifecycle_timeout
        # The operator's in-cluster image builder (rootless BuildKit Jobs); None: a devcontainer.json
        # that builds its image and names none is refused.
        self.builder = builder
        # Where managed CloudNativePG clusters' operator runs, and their object store's ports.
        self.clusters = clusters or ClusterNetwork()
        self.core = CoreV1Api(api)
        self.apps = AppsV1Api(api)
        self.custom = CustomObjectsApi(api)
        self.authentication = AuthenticationV1Api(api)
        self.applier = Applier(api)
        self.limits = limits or PlatformLimits()
        self.ingress_namespaces = ingress_namespaces
        # What no project's egress allowlist opens; the API server's addresses
        # are added per apply, from the cluster (apiserver.py).
        self.deny = deny or EgressDenyList()
        self.api_server = ApiServerAddresses(api)
        self.ready_timeout = ready_timeout
        self.exec_protocols = exec_protocols
        # Long waits heartbeat at least this often (their watch stays open): well
        # inside the time after which the reconciler takes a silent job as lost.
        if heartbeat_interval is None:
            heartbeat_interval = min(5.0, max(1.0, get_settings().job_stale_after / 3))
        self.heartbeat_interval = heartbeat_interval
        self._version: str | None = None

    def serves(self, api_version: str, kind: str) -> bool:
        """Whether the cluster serves the kind (``KindCatalog``): discovery, shared by the process."""
        return self.applier.is_namespaced(api_version, kind) is not None

    def _namespace_object(self, environment_id: int) -> dict[str, Any] | None:
        """The environment's Namespace: labelled as envhub's for this id *and* named so.

        Labels alone would let anyone who can label a namespace have envhub
        open shells there, mint its tokens or delete it as an orphan.
        """
        found = kube_json(
            "finding the environment's namespace",
            self.core.list_namespace,
            label_selector=f"{MANAGED},{ENV_LABEL}={environment_id}",
        )
        items = sorted(
            (
                item
                for item in found.get("items", [])
                if is_namespace_of(item["metadata"]["name"], environment_id)
            ),
            key=lambda item: str(item["metadata"]["name"]),
        )
        return items[0] if items else None

    def _namespace_of(self, environment_id: int) -> str | None:
        namespace = self._namespace_object(environment_id)
        return str(namespace["metadata"]["name"]) if namespace else None

    # -- apply ---------------------------------------------------------------

    def prepare(self, target: EnvironmentTarget, *, progress: ProgressReporter) -> None:
        """The environment's namespace with its quota, limits, network policy and RBAC, and no
        workloads: a deployment environment's place, made before its first release."""
        self._apply(target, progress, tuple(key for key, _title in PREPARE_STEPS))

    def _apply(
        self, target: EnvironmentTarget, progress: ProgressReporter, steps: tuple[str, ...]
    ) -> tuple[str, list[dict[str, Any]]]:
        """Apply the objects of ``steps`` (of namespace, isolation, workloads), one step after
        another; returns the namespace and the workloads as their apply returned them."""
        namespace = namespace_for(target)
        deny = self.deny
        if target.spec.egress.cidrs:
            deny = deny.extended(cidrs=self.api_server.get())
        clusters = self.clusters
        if any(
            (obj["apiVersion"], obj["kind"]) == (CLUSTER_API, CLUSTER_KIND) for obj in target.service_objects
        ):
            # A CloudNativePG cluster's instance manager talks to the API server: its policy says where.
            clusters = dataclasses.replace(clusters, api_server=self.api_server.get())
        objects = render_environment(
            target,
            namespace=namespace,
            limits=self.limits,
            ingress_namespaces=self.ingress_namespaces,
            is_namespaced=self.applier.is_namespaced,
            deny=deny,
            clusters=clusters,
            browser=self.browser if self._lends_browser(target) else None,
            workspace=self.workspace,
        )
        # A kind the cluster does not serve fails here, before anything is applied;
        # rendering looked every kind up already, so this asks the cluster nothing.
        for obj in objects:
            self.applier.resource(obj["apiVersion"], obj["kind"])
        _quota, clamped = clamp_quota(target.spec.quota, self.limits)
        groups: dict[str, list[dict[str, Any]]] = {"namespace": [], "isolation": [], "workloads": []}
        for obj in objects:
            groups[_group(obj)].append(obj)
        groups = {key: members for key, members in groups.items() if key in steps}
        inventory = Inventory(
            self.applier,
            namespace,
            [applied(o) for key in steps for o in groups[key] if o["kind"] != "Namespace"],
        )
        workloads: list[dict[str, Any]] = []
        for key, members in groups.items():
            progress.begin(key)
            quota: dict[str, Any] | None = None
            for obj, stored in zip(members, apply_in_waves(self.applier.apply, members), strict=True):
                if key == "namespace":
                    inventory.open(stored)
                elif obj["kind"] == "ResourceQuota" and key == "isolation":
                    quota = stored.object
                elif (obj["apiVersion"], obj["kind"]) in WORKLOAD_KINDS:
                    workloads.append(stored.object)
            if quota is not None:
                # Last in the step: the other isolation objects do not count against
                # the quota, and the controller counts it meanwhile.
                wait_quota_counted(
                    self.api,
                    namespace,
                    quota,
                    progress,
                    timeout=min(self.ready_timeout, 30.0),
                    heartbeat=self.heartbeat_interval,
                )
            note = ""
            if key == "isolation" and clamped:
                note = f" (quota capped at the platform maximum: {', '.join(clamped)})"
            progress.finish(key, f"{len(members)} object(s) applied in {namespace}{note}")
        if "workloads" in steps:
            inventory.close()
        # else: only added to the record (open did), never pruned: what a release applies
        # meanwhile is not in this list, and must stay.
        return namespace, workloads

    def apply(self, target: EnvironmentTarget, *, progress: ProgressReporter) -> RuntimeStatus:
        workspace = self._devcontainer(target, progress)
        target = dataclasses.replace(target, workspace=workspace)
        namespace, workloads = self._apply(target, progress, ("namespace", "isolation", "workloads"))
        # A redeploy of a sleeping environment: what still sleeps wakes (seen in the apply's answers).
        workloads = dormancy.finish_waking(self.apps, namespace, workloads)
        deadline = target.rollout_deadline
        progress.begin("health", f"watching workloads in {namespace}")
        rollout = RolloutWait(
            self.api,
            namespace,
            workloads,
            list_pods=lambda: self._pods(namespace),
            timeout=self.ready_timeout if deadline is None else deadline,
            heartbeat=self.heartbeat_interval,
            strict=deadline is not None,
        )
        readiness = rollout.run(progress)
        names = rollout.workloads
        count = f"{len(names)} workload{'' if len(names) == 1 else 's'}"
        progress.finish("health", f"{count} rolled out: {', '.join(names)}" if names else "no workloads")
        details = {"namespace": namespace, "workloads": ", ".join(names)}
        if workspace is not None:
            self._run_lifecycle(namespace, workspace, progress)
            details[dev.STEP] = json.dumps(workspace.config.summary())
        public = environment_endpoint(target, namespace=namespace)
        return RuntimeStatus(
            RuntimeState.ready,
            readiness.message,
            generation=target.generation,
            endpoint=Endpoint(public.host, public.port) if public else None,
            details=details,
            workspace=workspace,
        )

    def _lends_browser(self, target: EnvironmentTarget) -> bool:
        features = target.workspace.config.features if target.workspace is not None else ()
        return browser.wanted(self.browser_mode, features)

    def _devcontainer(self, target: EnvironmentTarget, progress: ProgressReporter) -> Workspace | None:
        """A development environment's dev container, read from its repository (a step of its own)."""
        if target.kind is not EnvironmentKind.development or target.spec.repo_url is None:
            return None
        progress.begin(dev.STEP)
        # A re-apply of the same generation (a resync) keeps the workspace's commit: a branch that
        # moved meanwhile does not restart the pod people work in; a redeploy takes the new commit.
        found = self._namespace_object(target.id)
        pinned = pinned_commit((found or {}).get("metadata", {}).get("annotations") or {}, target.generation)
        workspace = dev.read_workspace(
            target,
            git_config=self.git_config,
            allow_local=self.allow_local_repos,
            builder=self.builder is not None,
            commit=pinned,
        )
        if workspace is None:
            progress.skip(dev.STEP, "the repository has no devcontainer.json")
            return None
        config = browser.honour(workspace.config, self.browser_mode if self.browser else "off")
        assert config is not None
        plan = None
        if config.build is not None and self.builder is not None:
            plan = plan_build(
                target, config.build, path=config.path, commit=workspace.commit, settings=self.builder
            )
            config = dataclasses.replace(config, image=plan.image)
        refused = ", ".join(entry.key for entry in config.unsupported)
        progress.finish(
            dev.STEP,
            f"{config.path} at {workspace.commit[:12]}: {config.image}"
            + (" (to build)" if plan is not None else "")
            + (f"; not honoured: {refused}" if refused else ""),
        )
        if plan is not None and self.builder is not None:
            timeout = self.builder.timeout
            build_image(self.api, plan, progress, timeout=timeout, heartbeat=self.heartbeat_interval)
        return dataclasses.replace(workspace, config=config)

    def _run_lifecycle(self, namespace: str, workspace: Workspace, progress: ProgressReporter) -> None:
        """The workspace's lifecycle commands in its running pod (at an apply and at a wake)."""
        dev.run_lifecycle(
            self.core,
            namespace=namespace,
            workspace=workspace,
            pods=lambda: self._pods(namespace),
            progress=progress,
            protocols=self.exec_protocols,
            timeout=self.lifecycle_timeout,
        )

    def _pods(self, namespace: str) -> list[dict[str, Any]]:
        listing = kube_json("reading pods", self.core.list_namespaced_pod, namespace)
        pods: list[dict[str, Any]] = listing.get("items", [])
        return pods

    def _readiness(self, namespace: str) -> Readiness:
        deployments = kube_json("reading Deployments", self.apps.list_namespaced_deployment, namespace)
        items = deployments.get("items", [])
        readiness = explain(items, [])
        if not readiness.ready:
            readiness = explain(items, self._pods(namespace))
        return readiness

    # -- credentials ---------------------------------------------------------

    def issue_credentials(self, environment_id: int, *, ttl_seconds: int) -> WorkloadCredentials:
        namespace = self._namespace_of(environment_id)
        if namespace is None:
            raise NotFound(f"environment {environment_id} has no namespace on this cluster")
        ca, insecure = server_trust(self.api.configuration)
        return request_token(
            self.core,
            namespace=namespace,
            account=WORKLOAD_ACCOUNT,
            ttl_seconds=ttl_seconds,
            server=str(self.api.configuration.host),
            certificate_authority=ca,
            insecure=insecure,
        )

    def environment_of_token(self, token: str) -> int | None:
        """``WorkloadTokenReviewer``: a TokenReview for envhub's audience, then the account's
        namespace, which must be the environment's (named and labelled so)."""
        if not git_access.looks_like_service_account_token(token):
            return None
        username = review_token(self.authentication, token, audience=git_access.AUDIENCE)
        found = git_access.workload_account(username) if username else None
        if found is None or not git_access.is_workspace_account(found[1]):
            return None
        environment_id = git_access.environment_of_namespace(found[0])
        if environment_id is None or self._namespace_of(environment_id) != found[0]:
            return None
        return environment_id

    # -- status --------------------------------------------------------------

    def status(self, environment_id: int) -> RuntimeStatus:
        try:
            namespace = self._namespace_of(environment_id)
            if namespace is None:
                return RuntimeStatus(RuntimeState.absent, "no namespace")
            readiness = self._readiness(namespace)
        except EnvhubError as exc:
            if exc.retryable:
                return RuntimeStatus(RuntimeState.degraded, exc.message, details={"condition": exc.code})
            raise
        state = RuntimeState.ready if readiness.ready else RuntimeState.starting
        return RuntimeStatus(state, readiness.message, details={"namespace": namespace})

    def watch(self, handler: StatusHandler, stop: threading.Event) -> None:
        """Deployments on this thread; namespaces (the end of teardowns) on one of their own,
        which ends with this call (within its watch window)."""
        ended = threading.Event()
        namespaces = threading.Thread(
            target=NamespaceWatcher(self.api, handler).run,
            args=(ended,),
            name="envhub-namespace-watch",
            daemon=True,
        )
        namespaces.start()
        try:
            DeploymentWatcher(self.api, handler).run(stop)
        finally:
            ended.set()

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

    def usage(self, environment_id: int) -> Usage:
        """From the metrics API (metrics-server's PodMetrics), when the cluster serves one."""
        namespace = self._namespace_of(environment_id)
        if namespace is None:
            return Usage(available=True, source=METRICS_SOURCE)
        try:
            found = kube_json(
                "reading pod metrics",
                self.custom.list_namespaced_custom_object,
                "metrics.k8s.io",
                "v1beta1",
                namespace,
                "pods",
            )
        except NotFound:
            return Usage(available=False, reason=describing.NO_METRICS_API, source=METRICS_SOURCE)
        except ClusterForbidden as exc:
            reason = f"envhub may not read the metrics API here: {exc.message}"
            return Usage(available=False, reason=reason, source=METRICS_SOURCE)
        return Usage(available=True, containers=describing.pod_metrics(found), source=METRICS_SOURCE)

    def port_endpoint(self, environment_id: int, port: int) -> Endpoint | None:
        """A forwarded port of the environment's workspace: its Service's port, through the API server."""
        namespace = self._namespace_of(environment_id)
        if namespace is None:
            return None
        try:
            service = kube_json(
                "reading the workspace's Service", self.core.read_namespaced_service, WORKSPACE, namespace
            )
        except NotFound:
            return None
        if all(entry.get("port") != port for entry in (service.get("spec") or {}).get("ports") or []):
            return None
        return Endpoint(f"{WORKSPACE}.{namespace}.svc", port, relay=True)

    def endpoint(self, environment_id: int) -> Endpoint | None:
        """The public Service, reached through the API server (:meth:`http_transport`).

        Read from the Namespace's annotation: one request, no spec needed.
        """
        found = self._namespace_object(environment_id)
        if found is None or (found.get("status") or {}).get("phase") == "Terminating":
            return None
        namespace = str(found["metadata"]["name"])
        value = str((found["metadata"].get("annotations") or {}).get(PUBLIC_ANNOTATION, ""))
        service, _, port = value.partition(":")
        if not service or not port.isdigit():
            return None
        return Endpoint(f"{service}.{namespace}.svc", int(port), relay=True)

    def http_transport(self) -> ServiceProxyTransport:
        return ServiceProxyTransport(self.api.configuration)

    async def connect_websocket(self, url: str, **options: Any) -> ClientConnection:
        return await ServiceProxyTransport(self.api.configuration).connect_websocket(url, **options)

    def server_version(self) -> str:
        """The cluster's Kubernetes version (``1.20``), asked once: rendering validates for it."""
        if self._version is None:
            found = kube_json("reading the cluster's version", VersionApi(self.api).get_code)
            major = str(found.get("major", "")).rstrip("+")
            minor = str(found.get("minor", "")).rstrip("+")
            self._version = f"{major}.{minor}" if major.isdigit() and minor.isdigit() else ""
        return self._version or "1.25"

    def _environment_namespaces(self) -> dict[str, int]:
        """Live namespaces of environments (labelled as envhub's *and* named so), by name."""
        found = kube_json("listing envhub namespaces", self.core.list_namespace, label_selector=MANAGED)
        namespaces: dict[str, int] = {}
        for item in found.get("items", []):
            value = str((item["metadata"].get("labels") or {}).get(ENV_LABEL, ""))
            name = str(item["metadata"]["name"])
            if (
                value.isdigit()
                and is_namespace_of(name, int(value))
                and (item.get("status") or {}).get("phase") != "Terminating"
            ):
                namespaces[name] = int(value)
        return namespaces

    def managed_environments(self) -> set[int]:
        return set(self._environment_namespaces().values())

    # -- objects an operator keeps in environments' namespaces ----------------

    def environment_objects(self, api_version: str, kind: str) -> list[tuple[int, dict[str, Any]]]:
        """Every ``kind`` object in environments' namespaces, with its environment: two requests
        however many environments there are (the kind's list across namespaces, and the namespaces)."""
        resource = self.applier.resource(api_version, kind)
        listed = request(self.api, f"listing {kind} objects", "GET", resource.collection())
        namespaces = self._environment_namespaces()
        found: list[tuple[int, dict[str, Any]]] = []
        for item in listed.body.get("items", []):
            environment_id = namespaces.get(str((item.get("metadata") or {}).get("namespace", "")))
            if environment_id is not None:
                found.append((environment_id, item))
        return found

    def _namespace_required(self, environment_id: int) -> str:
        namespace = self._namespace_of(environment_id)
        if namespace is None:
            raise NotFound(f"environment {environment_id} has no namespace on the cluster")
        return namespace

    def create_object(self, environment_id: int, obj: dict[str, Any]) -> bool:
        """Create ``obj`` in the environment's namespace, labelled as envhub's; False if it is there."""
        namespace = self._namespace_required(environment_id)
        metadata = {**obj["metadata"], "namespace": namespace}
        metadata["labels"] = {
            **(metadata.get("labels") or {}),
            "app.kubernetes.io/managed-by": "envhub",
            ENV_LABEL: str(environment_id),
        }
        resource = self.applier.resource(obj["apiVersion"], obj["kind"])
        try:
            request(
                self.api,
                f"creating {obj['kind']} {metadata['name']}",
                "POST",
                resource.collection(namespace),
                body={**obj, "metadata": metadata},
            )
        except ClusterConflict:
            return False
        return True

    def read_object(
        self, environment_id: int, api_version: str, kind: str, name: str
    ) -> dict[str, Any] | None:
        """The object as the cluster has it (with its status); None when it or the namespace is not there."""
        namespace = self._namespace_of(environment_id)
        if namespace is None:
            return None
        resource = self.applier.resource(api_version, kind)
        try:
            return request(self.api, f"reading {kind} {name}", "GET", resource.path(name, namespace)).body
        except NotFound:
            return None

    def delete_object(self, environment_id: int, api_version: str, kind: str, name: str) -> bool:
        """Delete the object from the environment's namespace; False when it was not there."""
        namespace = self._namespace_of(environment_id)
        if namespace is None:
            return False
        return self.applier.delete(Applied(api_version, kind, name), namespace=namespace)

    # -- sleep and wake ------------------------------------------------------

    def sleep(self, environment_id: int, *, progress: ProgressReporter) -> str:
        """Scale the namespace's Deployments and StatefulSets to zero, each keeping its replicas."""
        namespace = self._namespace_of(environment_id)
        if namespace is None:
            progress.skip("sleep", "no namespace")
            return "no namespace"
        progress.begin("sleep", namespace)
        scaled = dormancy.scale_to_zero(self.apps, namespace)
        done = f"scaled to zero: {', '.join(scaled)}" if scaled else "nothing was running"
        progress.finish("sleep", done)
        return done

    def wake(self, target: EnvironmentTarget, *, progress: ProgressReporter) -> RuntimeStatus:
        """Give each workload back the replicas it slept with, then wait for them to roll out.

        A dev container's workspace then runs the lifecycle commands a start runs, as its
        first start did: ``postStartCommand`` and ``postAttachCommand`` in the new pod, and
        ``postCreateCommand`` only if it never succeeded for the workspace's commit. What
        they are was recorded on the Namespace by the last apply: nothing is fetched.
        A namespace that went missing meanwhile is made again by a full apply.
        """
        found = self._namespace_object(target.id)
        if found is None:
            return self.apply(target, progress=progress)
        namespace = str(found["metadata"]["name"])
        progress.begin("start", namespace)
        workloads = dormancy.restore(self.apps, namespace)
        progress.finish("start", f"{len(workloads)} workload(s) scaled back")
        progress.begin("health", f"watching workloads in {namespace}")
        rollout = RolloutWait(
            self.api,
            namespace,
            workloads,
            list_pods=lambda: self._pods(namespace),
            timeout=self.ready_timeout,
            heartbeat=self.heartbeat_interval,
        )
        readiness = rollout.run(progress)
        names = rollout.workloads
        progress.finish("health", f"rolled out: {', '.join(names)}" if names else "no workloads")
        workspace = kept_workspace(found["metadata"].get("annotations") or {})
        if workspace is not None:
            self._run_lifecycle(namespace, workspace, progress)
        # What the last apply published (a workspace's app too): the Namespace's annotation.
        public = self.endpoint(target.id)
        return RuntimeStatus(
            RuntimeState.ready,
            readiness.message,
            generation=target.generation,
            endpoint=Endpoint(public.host, public.port) if public else None,
            details={"namespace": namespace, "workloads": ", ".join(rollout.workloads)},
        )

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

    def destroy(self, environment_id: int, *, progress: ProgressReporter) -> bool:
        """Delete the environment's namespace; the namespace controller finalizes it meanwhile.

        Nothing waits for the finalization here (it can take minutes, and a
        job that waited would hold its worker): False while the namespace is
        terminating, and the namespace watch reports when it is gone
        (:class:`NamespaceWatcher`). A call once it is gone returns True.
        """
        namespace = self._namespace_object(environment_id)
        if namespace is None:
            progress.skip("stop", "no namespace")
            progress.finish("cleanup", "no namespace left")
            return True
        name = str(namespace["metadata"]["name"])
        if not namespace["metadata"].get("deletionTimestamp"):
            progress.begin("stop", name)
            try:
                deleted: dict[str, Any] | None = kube_json(
                    f"deleting namespace {name}",
                    self.core.delete_namespace,
                    name,
                    body=V1DeleteOptions(propagation_policy="Background"),
                )
            except NotFound:
                deleted = None
            # The delete answers with the terminating Namespace; anything else
            # (a 404, a Status) means there is nothing left to finalize.
            if deleted is None or deleted.get("kind") != "Namespace":
                progress.finish("stop", f"namespace {name} deleted")
                progress.finish("cleanup", f"namespace {name} is gone")
                return True
            progress.finish("stop", f"namespace {name} is terminating")
        progress.begin("cleanup", f"waiting for {name} to be finalized")
        return False

    # -- logs and exec -------------------------------------------------------

    def _pod(self, environment_id: int, container: str | None) -> tuple[str, str, str]:
        """(namespace, pod, container) for logs and exec (:meth:`_pod_and_annotations`)."""
        namespace, pod, chosen, _annotations = self._pod_and_annotations(environment_id, container)
        return namespace, pod, chosen

    def _pod_and_annotations(
        self, environment_id: int, container: str | None
    ) -> tuple[str, str, str, dict[str, str]]:
        """(namespace, pod, container, the Namespace's annotations) for logs and exec.

        ``container`` names a service (and its container), or else a container
        of the pods below (the ``playwright`` sidecar beside the public service).
        Without one, the spec's first service is the default (its order is on the
        Namespace, which was read anyway), then the others in order, then pods of
        user manifests, then those of managed services (a project's Redis);
        running pods before others.
        """
        found = self._namespace_object(environment_id)
        if found is None:
            raise NotReady("the environment has no namespace yet")
        namespace = str(found["metadata"]["name"])
        kwargs = {"label_selector": f"app.kubernetes.io/name={container}"} if container else {}
        pods = kube_json("finding a pod", self.core.list_namespaced_pod, namespace, **kwargs).get("items", [])
        if not pods and container:
            every = kube_json("finding a pod", self.core.list_namespaced_pod, namespace).get("items", [])
            pods = [p for p in every if container in {str(c["name"]) for c in p["spec"]["containers"]}]
        if not pods:
            raise NotReady("the environment has no pod yet")
        annotations = {str(k): str(v) for k, v in (found["metadata"].get("annotations") or {}).items()}
        order = annotations.get(SERVICES_ANNOTATION, "")
        rank = {name: index for index, name in enumerate(filter(None, order.split(",")))}

        def preference(pod: dict[str, Any]) -> tuple[int, bool, str]:
            labels = pod["metadata"].get("labels") or {}
            service = str(labels.get(SERVICE_LABEL, ""))
            running = (pod.get("status") or {}).get("phase") == "Running"
            last = len(rank) + (MANAGED_SERVICE_LABEL in labels)
            return rank.get(service, last), not running, str(pod["metadata"]["name"])

        pod = min(pods, key=preference)
        names = [str(c["name"]) for c in pod["spec"]["containers"]]
        chosen = container if container in names else names[0]
        return namespace, str(pod["metadata"]["name"]), str(chosen), annotations

    def logs(
        self,
        environment_id: int,
        *,
        follow: bool = False,
        tail: int | None = 200,
        container: str | None = None,
        since_seconds: int | None = None,
        until: float | None = None,
        previous: bool = False,
        timestamps: bool = False,
    ) -> Iterator[str]:
        namespace, pod, chosen = self._pod(environment_id, container)
        return follow_log(
            self.core,
            namespace=namespace,
            pod=pod,
            container=chosen,
            follow=follow and not previous,  # a previous instance prints nothing more
            tail=tail,
            since_seconds=since_seconds,
            until=until,
            previous=previous,
            timestamps=timestamps,
        )

    def exec(
        self,
        environment_id: int,
        command: list[str] | None = None,
        *,
        tty: bool = True,
        container: str | None = None,
    ) -> KubernetesExecSession:
        namespace, pod, chosen, annotations = self._pod_and_annotations(environment_id, container)
        argv = command or ["/bin/sh", "-l"]
        if chosen == WORKSPACE:  # a dev container's remoteEnv is for the sessions opened in it
            argv = with_remote_env(read_remote_env(annotations), argv)
        return KubernetesExecSession(
            self.core,
            namespace=namespace,
            pod=pod,
            container=chosen,
            command=argv,
            tty=tty,
            protocols=self.exec_protocols,
        )

    # Background processes (runtime.base.BackgroundHost): detached in the container, through exec.

    def _runner(self, environment_id: int) -> background.Run:
        def run(argv: list[str], timeout: float) -> tuple[int | None, bytes]:
            session = self.exec(environment_id, argv, tty=False)
            try:
                deadline = time.monotonic() + timeout
                output = b""
                while chunk := session.read(65536, timeout=max(0.1, deadline - time.monotonic())):
                    output += chunk
                return session.wait(max(0.1, deadline - time.monotonic())), output
            except TimeoutError:
                return None, output
            finally:
                session.close()

        return run

    def start_process(self, environment_id: int, key: str, argv: list[str]) -> None:
        background.start(self._runner(environment_id), key, argv)

    def process_state(self, environment_id: int, key: str) -> BackgroundState:
        return background.state(self._runner(environment_id), key)

    def process_output(self, environment_id: int, key: str, offset: int, limit: int) -> ProcessOutputChunk:
        return background.output(self._runner(environment_id), key, offset, limit)

    def stop_process(self, environment_id: int, key: str, grace: float) -> None:
        background.stop(self._runner(environment_id), key, grace)


def _group(obj: dict[str, Any]) -> str:
    kind = obj["kind"]
    if kind == "Namespace":
        return "namespace"
    if kind in _ISOLATION_KINDS and str(obj["metadata"]["name"]).startswith("envhub"):
        return "isolation"
    return "workloads"


def apply_in_waves(apply: Callable[[dict[str, Any]], Stored], objects: list[dict[str, Any]]) -> list[Stored]:
    """``apply`` (a server-side apply) to ``objects`` wave after wave in the order given (as Helm
    installs). A wave is a run of objects none of which needs another of the run to exist first,
    and its objects go at once: the built-in kinds that need nothing of each other
    (``_INDEPENDENT_KINDS``: quota, limits, policies, accounts, roles, config, secrets, claims,
    services), all the pod-making kinds (``_POD_KINDS``), or the objects of one other kind.

    The same requests as one by one, in far less time for a chart of many
    objects. Results come back in the order of ``objects``; the first
    failure is raised once the others of its wave have been answered.
    """
    results: list[Stored] = []
    for _wave, run in itertools.groupby(objects, key=_wave_of):
        batch = list(run)
        if len(batch) == 1:
            results.append(apply(batch[0]))
            continue
        with ThreadPoolExecutor(
            max_workers=min(_APPLY_AT_ONCE, len(batch)), thread_name_prefix=APPLY_THREADS
        ) as pool:
            results.extend(pool.map(apply, batch))
    return results


def _wave_of(obj: dict[str, Any]) -> tuple[str, str]:
    """The wave ``obj`` is applied in (``apply_in_waves``): the independent kinds', the pod-making
    kinds', or its own kind's."""
    api_version, kind = str(obj["apiVersion"]), str(obj["kind"])
    group = api_version.rpartition("/")[0]
    if (api_version, kind) in _INDEPENDENT_KINDS and obj.get("type") != _ACCOUNT_TOKEN:
        return ("", "independent")
    if kind in _POD_KINDS and "." not in group:  # built-in (core, apps, batch, autoscaling, policy)
        return ("", "pods")
    return (api_version, kind)
