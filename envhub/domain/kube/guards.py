"""Namespaced objects that would still let an environment escape its isolation.

Staying inside the namespace is not enough: envhub applies user manifests with
its own, powerful identity, so the API server's RBAC escalation checks do not
protect us. Refused, with the reason each one matters:

* Any NetworkPolicy (also Calico's and Cilium's namespaced kinds). Policies are
  additive: one user policy allowing all egress voids the allowlist.
* envhub's own objects by name (quota, limits, the workload account and role).
* RoleBindings to a ClusterRole other than ``view``, or to anyone but the
  namespace's own ServiceAccounts: ``admin`` inside the namespace, handed to a
  pod, rewrites the NetworkPolicies; a group such as ``system:authenticated``
  opens the environment to every other one.
* Roles granting anything but reads on NetworkPolicies, quotas, LimitRanges,
  RBAC, the Namespace object itself, Endpoints or Ingresses, or the
  ``bind``/``escalate``/``impersonate`` verbs (the same escapes, one step removed).
* Ingress: the public URL is the URL provider's job, and a user Ingress could
  claim another environment's host name on a shared controller.
* Endpoints/EndpointSlices and Service ``externalIPs``: hand-made endpoints
  point the ingress controller at arbitrary addresses (CVE-2021-25740), external
  IPs intercept other tenants' traffic (CVE-2020-8554). NodePort and LoadBalancer
  Services bypass the URL provider; the ResourceQuota forbids them as well.
* Pods (and the pod templates of built-in workload kinds) using host networking,
  PID or IPC, hostPath volumes, host ports, privileged containers or added
  capabilities beyond Pod Security "baseline". Host-network pods are not subject
  to NetworkPolicies at all. Newer clusters also enforce this through the
  namespace's Pod Security label; v1.20 has nothing else that does, and custom
  kinds with pod templates are only covered by that label.
"""

from __future__ import annotations

from typing import Any

from envhub.domain.kube.errors import ManifestRejected
from envhub.domain.kube.names import RESERVED_OBJECTS

_POLICIES_ARE_OURS = "network policies are envhub's; ask for egress in the project's allowlist"
_NO_ENDPOINTS = "hand-made endpoints can point the ingress controller anywhere; use a Service with a selector"
REFUSED_KINDS: dict[str, str] = {
    "NetworkPolicy": _POLICIES_ARE_OURS,
    "CiliumNetworkPolicy": _POLICIES_ARE_OURS,
    "Ingress": "envhub gives the environment its public URL; disable the chart's ingress",
    "Endpoints": _NO_ENDPOINTS,
    "EndpointSlice": _NO_ENDPOINTS,
}
SAFE_CLUSTER_ROLES = frozenset({"view"})
_READ_VERBS = frozenset({"get", "list", "watch"})
# Named explicitly; "*" is treated as a write and checked against the guarded resources.
_ESCALATING_VERBS = frozenset({"bind", "escalate", "impersonate"})
# (API group, resource) a Role may only read.
_GUARDED_RESOURCES: frozenset[tuple[str, str]] = frozenset(
    {
        ("", "namespaces"),
        ("", "resourcequotas"),
        ("", "limitranges"),
        ("", "endpoints"),
        ("discovery.k8s.io", "endpointslices"),
        ("networking.k8s.io", "networkpolicies"),
        ("networking.k8s.io", "ingresses"),
        ("rbac.authorization.k8s.io", "roles"),
        ("rbac.authorization.k8s.io", "rolebindings"),
    }
)
# Capabilities Pod Security "baseline" allows adding.
_BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
        "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
    }
)  # fmt: skip
# Where built-in kinds keep their pod template.
_TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {
    "Deployment": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "Job": ("spec", "template"),
    "ReplicationController": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}


def _dig(obj: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def pod_template_metadata(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The pod template's ``metadata`` of a built-in workload, created if absent."""
    path = _TEMPLATE_PATHS.get(obj["kind"])
    template = _dig(obj, path) if path else None
    if not isinstance(template, dict):
        return None
    meta = template.setdefault("metadata", {})
    return meta if isinstance(meta, dict) else None


def pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The pod spec of a Pod or of a built-in workload's template."""
    if obj["kind"] == "Pod":
        spec = obj.get("spec")
    else:
        path = _TEMPLATE_PATHS.get(obj["kind"])
        spec = _dig(obj, (*path, "spec")) if path else None
    return spec if isinstance(spec, dict) else None


def _pod_problems(spec: dict[str, Any]) -> list[str]:
    problems = [
        f"{field}: true" for field in ("hostNetwork", "hostPID", "hostIPC") if spec.get(field) is True
    ]
    problems += [
        f"hostPath volume {volume.get('name')!r}"
        for volume in _list(spec.get("volumes"))
        if isinstance(volume, dict) and volume.get("hostPath") is not None
    ]
    containers = [
        c
        for field in ("initContainers", "containers", "ephemeralContainers")
        for c in _list(spec.get(field))
        if isinstance(c, dict)
    ]
    for container in containers:
        name = container.get("name")
        if _dig(container, ("securityContext", "privileged")) is True:
            problems.append(f"container {name!r} is privileged")
        added = (
            set(_list(_dig(container, ("securityContext", "capabilities", "add")))) - _BASELINE_CAPABILITIES
        )
        if added:
            problems.append(f"container {name!r} adds capabilities {', '.join(sorted(map(str, added)))}")
        if any(isinstance(p, dict) and p.get("hostPort") for p in _list(container.get("ports"))):
            problems.append(f"container {name!r} uses a hostPort")
    return problems


def _role_problems(rules: list[Any]) -> list[str]:
    problems = []
    for rule in rules:
        if not isinstance(rule, dict):
            continue
        verbs = {str(v) for v in _list(rule.get("verbs"))}
        groups = {str(g) for g in _list(rule.get("apiGroups"))}
        resources = {str(r) for r in _list(rule.get("resources"))}
        if verbs & _ESCALATING_VERBS:
            problems.append(f"verbs {', '.join(sorted(verbs & _ESCALATING_VERBS))}")
        if not verbs - _READ_VERBS:
            continue
        for group, resource in sorted(_GUARDED_RESOURCES):
            group_matches = "*" in groups or group in groups
            resource_matches = "*" in resources or any(
                r == resource or r.startswith(f"{resource}/") for r in resources
            )
            if group_matches and resource_matches:
                problems.append(f"write access to {resource}")
    return sorted(set(problems))


def _binding_problems(obj: dict[str, Any], namespace: str) -> list[str]:
    problems = []
    ref = obj.get("roleRef")
    if (
        isinstance(ref, dict)
        and ref.get("kind") == "ClusterRole"
        and ref.get("name") not in SAFE_CLUSTER_ROLES
    ):
        problems.append(
            f"it binds ClusterRole {ref.get('name')!r} (only {', '.join(sorted(SAFE_CLUSTER_ROLES))})"
        )
    for subject in _list(obj.get("subjects")):
        if not isinstance(subject, dict):
            continue
        local = subject.get("kind") == "ServiceAccount" and subject.get("namespace") in (None, "", namespace)
        if not local:
            who = f"{subject.get('kind')} {subject.get('name')!r}"
            problems.append(f"subject {who} is not a ServiceAccount of this namespace")
    return problems


def _service_problems(spec: Any) -> list[str]:
    if not isinstance(spec, dict):
        return []
    problems = []
    if spec.get("type") in ("NodePort", "LoadBalancer"):
        problems.append(f"type {spec['type']} (use ClusterIP; envhub provides the public URL)")
    if _list(spec.get("externalIPs")):
        problems.append("externalIPs")
    return problems


def check_object(obj: dict[str, Any], *, namespace: str) -> None:
    """Raise :class:`ManifestRejected` if ``obj`` would weaken the environment's isolation."""
    kind, name = obj["kind"], obj["metadata"]["name"]
    what = f"{kind}/{name}"
    if (kind, name) in RESERVED_OBJECTS:
        raise ManifestRejected(
            f"{what} is envhub's own object and cannot be replaced",
            details={"object": what, "reason": "reserved_name"},
        )
    if kind in REFUSED_KINDS:
        raise ManifestRejected(
            f"{what} is not allowed: {REFUSED_KINDS[kind]}", details={"object": what, "reason": "kind"}
        )
    problems: list[str] = []
    if kind == "Role":
        problems = _role_problems(_list(obj.get("rules")))
    elif kind == "RoleBinding":
        problems = _binding_problems(obj, namespace)
    elif kind == "Service":
        problems = _service_problems(obj.get("spec"))
    else:
        spec = pod_spec(obj)
        problems = _pod_problems(spec) if spec is not None else []
    if problems:
        raise ManifestRejected(
            f"{what} would weaken the environment's isolation: {'; '.join(problems)}",
            details={"object": what, "reason": "isolation", "problems": problems},
        )
