"""One environment as the ordered list of Kubernetes objects the runtime applies.

Pure and deterministic: the same target and settings give equal output, every
time, so applying it again (server-side apply with envhub's field manager)
changes nothing. Objects envhub renders use only API versions served by v1.20
and by current clusters alike (v1, apps/v1, networking.k8s.io/v1,
rbac.authorization.k8s.io/v1); user manifests keep the versions they name, and
the runtime resolves those by discovery.

Order: the Namespace, then what constrains everything created after it (quota,
limits, network policies), then RBAC (the workload account, and the owning
team's kubectl access: ``access.py``), then the project's secrets and the
objects of managed services that run in the namespace (a CloudNativePG
``Cluster``: ``cloudnative_pg.py``; a Redis: ``redis.py``), then workloads
(Services before Deployments, as Helm does, a managed service's Deployment
with the container services'; then the public Ingress when the URL provider
asks for one: ``ingress.py``) and finally the user's manifests, themselves
sorted by kind so a ServiceAccount or ConfigMap exists before the pods that
use it.
The runtime records what it applied on the Namespace and prunes what dropped
out (see :mod:`envhub.domain.kube.inventory`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from envhub.domain.kube.access import render_team_access
from envhub.domain.kube.browser import BrowserSidecar, with_browser
from envhub.domain.kube.cloudnative_pg import API_VERSION as CLUSTER_API_VERSION
from envhub.domain.kube.cloudnative_pg import CLUSTER_KIND
from envhub.domain.kube.deployments import (
    PublicEndpoint,
    render_deployment,
    render_secrets,
    render_service,
)
from envhub.domain.kube.egress import EgressDenyList, check_egress
from envhub.domain.kube.errors import ManifestRejected
from envhub.domain.kube.gateway import GATEWAY_SERVICE, render_gateway_service
from envhub.domain.kube.guards import check_object
from envhub.domain.kube.ingress import render_ingress
from envhub.domain.kube.inventory import PUBLIC_ANNOTATION, SERVICES_ANNOTATION, identity
from envhub.domain.kube.limits import PlatformLimits, clamp_quota, render_limit_range, render_resource_quota
from envhub.domain.kube.manifests import IsNamespaced, parse_manifests, scope_manifests
from envhub.domain.kube.names import NAMESPACE_NAME_LABEL, metadata, namespace_for
from envhub.domain.kube.network import ClusterNetwork, render_cluster_policy, render_network_policies
from envhub.domain.kube.rbac import render_rbac
from envhub.domain.kube.workspace import (
    WORKSPACE,
    WorkspaceSettings,
    environment_endpoint,
    own_url_ports,
    render_git_access,
    render_workspace,
)
from envhub.domain.kube.workspace_record import namespace_annotations
from envhub.domain.naming import validate_label
from envhub.domain.specs import EnvironmentTarget

DEFAULT_INGRESS_NAMESPACES = ("envhub-system",)
PSA_PREFIX = "pod-security.kubernetes.io"

# Helm's install order for the kinds a user manifest may contain; unknown kinds
# (custom resources) go last, after the kinds they are likely to depend on.
_KIND_ORDER = (
    "ServiceAccount", "Secret", "ConfigMap", "PersistentVolumeClaim", "Role", "RoleBinding",
    "Service", "Pod", "ReplicationController", "ReplicaSet", "Deployment", "StatefulSet",
    "DaemonSet", "HorizontalPodAutoscaler", "Job", "CronJob", "PodDisruptionBudget",
)  # fmt: skip
_KIND_RANK = {kind: rank for rank, kind in enumerate(_KIND_ORDER)}
# A managed service's objects of these kinds run pods: they go with the Deployments, after every Service.
_POD_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet"})


def pod_security_labels(level: str) -> dict[str, str]:
    """Pod Security admission labels: enforce ``level``, and warn and audit at it too.

    Clusters before v1.23 ignore them (the manifest guard holds baseline there);
    ``latest`` follows the cluster's own version of the standard.
    """
    return {
        f"{PSA_PREFIX}/{mode}{suffix}": value
        for mode in ("enforce", "audit", "warn")
        for suffix, value in (("", level), ("-version", "latest"))
    }


def render_namespace(
    namespace: str,
    *,
    labels: dict[str, str],
    limits: PlatformLimits,
    services: Sequence[str] = (),
    public: PublicEndpoint | None = None,
    extra_annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The Namespace; ``services`` (the spec's container services, in order), the
    ``public`` endpoint and ``extra_annotations`` go in annotations."""
    all_labels = {**labels, NAMESPACE_NAME_LABEL: namespace, **pod_security_labels(limits.pod_security)}
    meta = metadata(namespace, None, all_labels)
    annotations = {}
    if services:
        annotations[SERVICES_ANNOTATION] = ",".join(services)
    if public is not None:
        annotations[PUBLIC_ANNOTATION] = f"{public.service}:{public.port}"
    annotations.update(extra_annotations or {})
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def _service_object(obj: Mapping[str, Any], *, namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    """A managed service's object (see ``EnvironmentTarget.service_objects``) in the namespace, with
    envhub's labels over its own, and on its pod template when it has one (a Redis's Deployment):
    its pods are the environment's like every other. envhub rendered it: it passes no manifest guard."""
    meta = dict(obj["metadata"])
    meta["namespace"] = namespace
    meta["labels"] = {**(meta.get("labels") or {}), **labels}
    placed = {**obj, "metadata": meta}
    template = (obj.get("spec") or {}).get("template") if obj["kind"] in _POD_KINDS else None
    if template is not None:
        pod_meta = dict(template.get("metadata") or {})
        pod_meta["labels"] = {**(pod_meta.get("labels") or {}), **labels}
        placed["spec"] = {**obj["spec"], "template": {**template, "metadata": pod_meta}}
    return placed


def _refuse_duplicates(objects: list[dict[str, Any]]) -> None:
    seen: set[tuple[str, str, str]] = set()
    for obj in objects:
        key = identity(obj)
        if key in seen:
            what = f"{key[1]}/{key[2]}"
            raise ManifestRejected(
                f"{what} is defined twice (by the manifests and envhub, or twice in the manifests)",
                details={"object": what, "reason": "duplicate"},
            )
        seen.add(key)


def render_environment(
    target: EnvironmentTarget,
    *,
    namespace: str | None = None,
    limits: PlatformLimits | None = None,
    ingress_namespaces: Sequence[str] = DEFAULT_INGRESS_NAMESPACES,
    dns_any_namespace: bool = True,
    dns_cidrs: Sequence[str] = (),
    is_namespaced: IsNamespaced | None = None,
    deny: EgressDenyList | None = None,
    clusters: ClusterNetwork | None = None,
    browser: BrowserSidecar | None = None,
    workspace: WorkspaceSettings | None = None,
) -> list[dict[str, Any]]:
    """Every object of ``target``'s environment, in apply order.

    ``namespace`` defaults to :func:`~envhub.domain.kube.names.namespace_for`;
    ``ingress_namespaces`` are where the public-URL provider's proxies run;
    ``dns_any_namespace`` and ``dns_cidrs`` shape the DNS rule (see
    :mod:`envhub.domain.kube.network`); ``is_namespaced`` answers from API
    discovery for user manifests; ``deny`` is the egress no allowlist opens
    (the built-in defaults when None). Raises :class:`~envhub.domain.kube.
    errors.ManifestInvalid` / :class:`~envhub.domain.kube.errors.
    ManifestRejected` for bad user manifests and :class:`~envhub.domain.kube.
    errors.EgressDenied` for an allowlist entry the deny list forbids.
    Each managed CloudNativePG ``Cluster`` among the target's service objects
    gets its network policy, shaped by ``clusters`` (defaults when None).
    ``browser``: the public service's pod (the workspace's, when there is
    one) gets a Playwright sidecar (:mod:`envhub.domain.kube.browser`).
    A target with a workspace (``target.workspace``) gets its claims, Service
    and Deployment (``workspace.py``, shaped by ``workspace``), checked by the
    manifest guard like a user's manifests: its image and paths are the
    repository's.
    """
    limits = limits if limits is not None else PlatformLimits()
    deny = deny if deny is not None else EgressDenyList()
    check_egress(target.spec.egress, deny)
    namespace = validate_label(
        namespace if namespace is not None else namespace_for(target), field="namespace"
    )
    for name in ingress_namespaces:
        validate_label(name, field="ingress namespace")
    labels = target.labels
    spec = target.spec
    quota, _clamped = clamp_quota(spec.quota, limits)
    services = [service.name for service in spec.services]
    if target.workspace is not None:
        services.insert(0, WORKSPACE)  # where terminals and commands go by default
    objects: list[dict[str, Any]] = [
        render_namespace(
            namespace,
            labels=labels,
            limits=limits,
            services=services,
            public=environment_endpoint(target, namespace=namespace),
            extra_annotations=namespace_annotations(target),
        ),
        render_resource_quota(quota, namespace=namespace, labels=labels),
        render_limit_range(quota, namespace=namespace, labels=labels),
        *render_network_policies(
            namespace=namespace,
            labels=labels,
            egress=spec.egress,
            ingress_namespaces=ingress_namespaces,
            dns_any_namespace=dns_any_namespace,
            dns_cidrs=dns_cidrs,
            deny=deny,
        ),
        *render_rbac(namespace=namespace, labels=labels),
        *render_team_access(namespace=namespace, team=target.team, labels=labels),
    ]
    secrets = render_secrets(target, namespace=namespace)
    if secrets is not None:
        objects.append(secrets)
    workspace = workspace if workspace is not None else WorkspaceSettings()
    # The workspace's way to envhub for git credentials: a policy (isolation) and the helper.
    objects.extend(render_git_access(target, namespace=namespace, settings=workspace))
    managed = [_service_object(obj, namespace=namespace, labels=labels) for obj in target.service_objects]
    network = clusters if clusters is not None else ClusterNetwork()
    objects.extend(
        render_cluster_policy(
            obj["metadata"]["name"],
            pods=obj["spec"]["inheritedMetadata"]["labels"],
            namespace=namespace,
            labels=labels,
            operator_namespaces=network.operator_namespaces,
            api_server=network.api_server,
            store_ports=network.store_ports,
            deny=deny,
        )
        for obj in managed
        if (obj["apiVersion"], obj["kind"]) == (CLUSTER_API_VERSION, CLUSTER_KIND)
    )
    objects.extend(obj for obj in managed if obj["kind"] not in _POD_KINDS)
    workspace_objects = render_workspace(target, namespace=namespace, settings=workspace)
    for obj in workspace_objects:
        check_object(obj, namespace=namespace)
    objects.extend(obj for obj in workspace_objects if obj["kind"] != "Deployment")
    for service in spec.services:
        rendered = render_service(target, service, namespace=namespace)
        if rendered is not None:
            objects.append(rendered)
    objects.extend(obj for obj in managed if obj["kind"] in _POD_KINDS)
    public = environment_endpoint(target, namespace=namespace)
    pods = [
        *(obj for obj in workspace_objects if obj["kind"] == "Deployment"),
        *(render_deployment(target, service, namespace=namespace) for service in spec.services),
    ]
    # The Playwright sidecar joins the pod that answers the environment's URL, or the workspace's pod
    # where there is one: only that pod can mount the workspace (a ReadWriteOnce claim).
    lends_to = WORKSPACE if target.workspace is not None else public.service if public is not None else None
    for deployment in pods:
        if browser is not None and public is not None and deployment["metadata"]["name"] == lends_to:
            deployment = with_browser(deployment, browser, target.variables)
        objects.append(deployment)
    # Forwarded ports with public URLs of their own (each its own host), beside the app's.
    forwarded = own_url_ports(target, namespace=namespace)
    if target.gateway is not None and (public is not None or forwarded):
        objects.append(render_gateway_service(target.gateway, namespace=namespace, labels=labels))
        # Sign-in first: the Ingress sends every host to envhub's gateway, which relays.
        relay = PublicEndpoint(service=GATEWAY_SERVICE, namespace=namespace, port=target.gateway.port)
        public = relay if public is not None else None
        forwarded = dict.fromkeys(forwarded, relay)
    if target.ingress is not None:
        ingress = render_ingress(target.ingress, public, namespace=namespace, labels=labels, ports=forwarded)
        if ingress is not None:
            objects.append(ingress)
    if spec.manifests:
        scoped = scope_manifests(
            parse_manifests(spec.manifests),
            namespace=namespace,
            labels=labels,
            is_namespaced=is_namespaced,
            variables=target.variables,
        )
        # sorted() is stable: within a kind, the manifests' own order is kept.
        objects.extend(sorted(scoped, key=lambda obj: _KIND_RANK.get(obj["kind"], len(_KIND_ORDER))))
    _refuse_duplicates(objects)
    return objects
