"""Namespaced objects that would still let an environment escape its isolation.

Staying inside the namespace is not enough: envhub applies user manifests with
its own, powerful identity, so the API server's RBAC escalation checks do not
protect us, and v1.20 has no Pod Security admission. Every refusal is a
:class:`ManifestRejected` naming the object and the field at fault
(``details["field"]``, e.g. ``spec.template.spec.hostNetwork``). Refused:

* Kinds (:data:`REFUSED_KINDS`): any NetworkPolicy (policies are additive: one
  allowing all egress voids the allowlist), Ingress and Gateway API routes (the
  public URL is the URL provider's job, and a route could claim another
  environment's host name), ReferenceGrant (lets other namespaces in),
  Endpoints/EndpointSlices (hand-made endpoints point the ingress controller or
  the API server's proxy at arbitrary addresses, CVE-2021-25740), Bindings and
  ControllerRevisions (the scheduler's and controllers' business).
* envhub's own objects by name (quota, limits, the workload account and role).
* Roles and RoleBindings that would let a workload create what this module
  checks, behind its back (:mod:`~envhub.domain.kube.role_guard`).
* Pods and the pod templates of every built-in workload kind, and pod specs
  embedded in custom kinds: Pod Security "baseline" and a little more
  (:mod:`~envhub.domain.kube.pod_guard`).
* Services of type NodePort, LoadBalancer or ExternalName, and ``externalIPs``
  (CVE-2020-8554): they bypass the URL provider, or make a proxy reach
  somewhere the environment cannot.
* Claims naming a PersistentVolume (``volumeName``).
* Any field naming another namespace (a RoleBinding's subject, a claim's
  ``dataSourceRef``, a custom kind's reference), wherever it is.
* Any field naming the object store's Secret that envhub gives managed
  CloudNativePG clusters (a pod's volume or ``secretKeyRef``, a user's own
  Cluster's credentials), wherever it is: its keys reach every environment's
  backups.
"""

from __future__ import annotations

from typing import Any

from envhub.domain.kube.errors import ManifestRejected
from envhub.domain.kube.names import BACKUP_STORE_SECRET, RESERVED_OBJECTS
from envhub.domain.kube.pod_guard import (
    TEMPLATE_PATHS,
    claim_problems,
    embedded_pod_problems,
    pod_spec,
    pod_template_metadata,
    workload_problems,
)
from envhub.domain.kube.problems import Problem, child, listed, mapping
from envhub.domain.kube.role_guard import SAFE_CLUSTER_ROLES, binding_problems, role_problems

__all__ = ["REFUSED_KINDS", "SAFE_CLUSTER_ROLES", "check_object", "pod_spec", "pod_template_metadata"]

_POLICIES_ARE_OURS = "network policies are envhub's; ask for egress in the project's allowlist"
_NO_ENDPOINTS = "hand-made endpoints can point a proxy anywhere; use a Service with a selector"
_URLS_ARE_OURS = "envhub gives the environment its public URL; disable the chart's ingress or routes"
REFUSED_KINDS: dict[str, str] = {
    "NetworkPolicy": _POLICIES_ARE_OURS,
    "CiliumNetworkPolicy": _POLICIES_ARE_OURS,
    "Ingress": _URLS_ARE_OURS,
    "Gateway": _URLS_ARE_OURS,
    "HTTPRoute": _URLS_ARE_OURS,
    "GRPCRoute": _URLS_ARE_OURS,
    "TCPRoute": _URLS_ARE_OURS,
    "TLSRoute": _URLS_ARE_OURS,
    "UDPRoute": _URLS_ARE_OURS,
    "ReferenceGrant": "it lets objects of other namespaces refer to this one",
    "Endpoints": _NO_ENDPOINTS,
    "EndpointSlice": _NO_ENDPOINTS,
    "Binding": "binding pods to nodes is the scheduler's job",
    "ControllerRevision": "revisions are written by the workload controllers",
}
# Kinds whose checks are precise; every other kind is searched for pod specs.
_CHECKED_KINDS = frozenset(
    {*TEMPLATE_PATHS, "Pod", "Role", "RoleBinding", "Service", "PersistentVolumeClaim",
     "ConfigMap", "Secret", "ServiceAccount", "ResourceQuota", "LimitRange",
     "HorizontalPodAutoscaler", "PodDisruptionBudget", "Lease", "Event"}
)  # fmt: skip
# Parts of an object whose contents are the user's data, not references.
_DATA_FIELDS = frozenset({"data", "stringData", "binaryData"})


def _service_problems(spec: Any) -> list[Problem]:
    spec = mapping(spec)
    problems = []
    if spec.get("type") in ("NodePort", "LoadBalancer", "ExternalName"):
        problems.append(
            Problem(
                "spec.type",
                f"type {spec['type']} reaches past envhub (use ClusterIP; envhub provides the public URL)",
            )
        )
    if listed(spec.get("externalIPs")):
        problems.append(Problem("spec.externalIPs", "externalIPs capture other tenants' traffic"))
    return problems


def _foreign_namespaces(node: Any, namespace: str, at: str = "") -> list[Problem]:
    """Every ``namespace`` field (outside metadata and data) naming another namespace."""
    problems: list[Problem] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if not at and (key == "metadata" or key in _DATA_FIELDS):
                continue
            here = child(at, str(key))
            if key == "namespace" and isinstance(value, str) and value not in ("", namespace):
                problems.append(Problem(here, f"names namespace {value!r}; only {namespace!r} is this one"))
            else:
                problems += _foreign_namespaces(value, namespace, here)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            problems += _foreign_namespaces(value, namespace, child(at, index))
    return problems


def _protected_references(node: Any, at: str = "") -> list[Problem]:
    """Every value (outside metadata and data) naming the backup store's Secret."""
    problems: list[Problem] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if not at and (key == "metadata" or key in _DATA_FIELDS):
                continue
            problems += _protected_references(value, child(at, str(key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            problems += _protected_references(value, child(at, index))
    elif node == BACKUP_STORE_SECRET:
        problems.append(
            Problem(at, f"names {BACKUP_STORE_SECRET}, envhub's key to every environment's backups")
        )
    return problems


def problems_of(obj: dict[str, Any], *, namespace: str | None) -> list[Problem]:
    """What is refused in ``obj``; ``namespace`` None skips the checks that need it."""
    kind = obj["kind"]
    if kind == "Role":
        problems = role_problems(obj)
    elif kind == "RoleBinding":
        problems = binding_problems(obj)
    elif kind == "Service":
        problems = _service_problems(obj.get("spec"))
    elif kind == "PersistentVolumeClaim":
        problems = claim_problems(obj)
    elif kind in _CHECKED_KINDS:
        problems = workload_problems(obj)
    else:
        problems = embedded_pod_problems(obj)
    if namespace is not None:
        problems += _foreign_namespaces(obj, namespace)
    return problems + _protected_references(obj)


def check_object(obj: dict[str, Any], *, namespace: str | None) -> None:
    """Raise :class:`ManifestRejected` if ``obj`` would weaken the environment's isolation.

    ``namespace`` is the environment's; None (a project's defaults, before any
    environment exists) skips only the check of fields naming namespaces.
    """
    kind, name = obj["kind"], obj["metadata"]["name"]
    what = f"{kind}/{name}"
    if (kind, name) in RESERVED_OBJECTS:
        raise ManifestRejected(
            f"{what} is envhub's own object and cannot be replaced",
            details={"object": what, "reason": "reserved_name", "field": "metadata.name"},
        )
    if kind in REFUSED_KINDS:
        raise ManifestRejected(
            f"{what} is not allowed: {REFUSED_KINDS[kind]}",
            details={"object": what, "reason": "kind", "field": "kind"},
        )
    problems = problems_of(obj, namespace=namespace)
    if problems:
        raise ManifestRejected(
            f"{what} would weaken the environment's isolation: {'; '.join(map(str, problems))}",
            details={
                "object": what,
                "reason": "isolation",
                "field": problems[0].field,
                "fields": [p.field for p in problems],
                "problems": [str(p) for p in problems],
            },
        )
