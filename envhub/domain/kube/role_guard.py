"""Roles and RoleBindings a manifest may define: nothing that creates what the guard checks.

envhub checks every pod, Service and claim a manifest holds. A Role that lets
a workload create or change those itself would let it skip the check: with
``pods: create`` bound to its ServiceAccount, a pod creates a privileged pod
the guard never sees (and v1.20 has no Pod Security admission to stop it).
The same holds for every kind that makes pods (Deployments, Jobs, ... and any
custom kind, whose operator might), for Services (``externalIPs``,
``ExternalName``), claims (``volumeName``), and for RBAC itself.

So a Role is read as an allowlist:

* reads (get, list, watch) of anything, except the subresources that are
  shells or tunnels (``pods/exec``, ``attach``, ``portforward``, ``proxy``,
  ``services/proxy``): v1.20 authorizes a WebSocket exec as "get";
* create, update and patch only of :data:`WRITABLE`: ConfigMaps, events,
  leases, scaling, evictions, autoscalers and disruption budgets;
* delete also of :data:`DELETABLE` (pods and workloads: deleting is no
  escalation, and envhub re-applies its own objects);
* no wildcards, no other verbs (``escalate``, ``bind``, ``impersonate``,
  ``use``, custom ones), no ``nonResourceURLs``.

``resourceNames`` do not narrow anything here: a server-side apply is a PATCH
by name that creates the object, so ``pods: patch`` on one name still makes a pod.

A RoleBinding may bind a Role (of this namespace, itself checked when it is in
the manifests; otherwise it is envhub's own) or the ClusterRole ``view``, and
only to ServiceAccounts: a group such as ``system:authenticated`` would open
the environment to everyone. ClusterRoles and ClusterRoleBindings are
cluster-scoped and refused before this is reached.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from envhub.domain.kube.problems import Problem, child, listed, mapping

SAFE_CLUSTER_ROLES = frozenset({"view"})
READ_VERBS = frozenset({"get", "list", "watch"})
CHANGE_VERBS = frozenset({"create", "update", "patch"})
DELETE_VERBS = frozenset({"delete", "deletecollection"})
# (API group, resource) a Role may grant create/update/patch on.
WRITABLE: frozenset[tuple[str, str]] = frozenset(
    {
        ("", "configmaps"),
        ("", "events"),
        ("events.k8s.io", "events"),
        ("coordination.k8s.io", "leases"),
        ("", "pods/eviction"),
        ("", "replicationcontrollers/scale"),
        ("apps", "deployments/scale"),
        ("apps", "replicasets/scale"),
        ("apps", "statefulsets/scale"),
        ("autoscaling", "horizontalpodautoscalers"),
        ("policy", "poddisruptionbudgets"),
    }
)
# ... and, besides those, may grant delete on.
DELETABLE: frozenset[tuple[str, str]] = frozenset(
    {
        ("", "pods"),
        ("", "replicationcontrollers"),
        ("", "persistentvolumeclaims"),
        ("", "services"),
        ("", "secrets"),
        ("apps", "deployments"),
        ("apps", "replicasets"),
        ("apps", "statefulsets"),
        ("apps", "daemonsets"),
        ("batch", "jobs"),
        ("batch", "cronjobs"),
    }
)
# Subresources that are a shell or a tunnel, whatever the verb.
TUNNELS = frozenset({"pods/exec", "pods/attach", "pods/portforward", "pods/proxy", "services/proxy"})
_WRITABLE_HINT = ", ".join(sorted(f"{g or 'core'}/{r}" for g, r in WRITABLE))


def _wildcards(rule: dict[str, Any], at: str) -> Iterator[Problem]:
    for field in ("apiGroups", "resources", "verbs"):
        for value in listed(rule.get(field)):
            if str(value) == "*" or str(value).startswith("*/"):
                yield Problem(child(at, field), f"wildcard {value!r}: name each {field[:-1]} instead")
                break


def _rule_problems(rule: dict[str, Any], at: str) -> Iterator[Problem]:
    if "nonResourceURLs" in rule:
        yield Problem(child(at, "nonResourceURLs"), "non-resource URLs are the cluster's, not a namespace's")
    wildcards = list(_wildcards(rule, at))
    yield from wildcards
    if wildcards:
        return
    verbs = {str(v) for v in listed(rule.get("verbs"))}
    unknown = sorted(verbs - READ_VERBS - CHANGE_VERBS - DELETE_VERBS)
    if unknown:
        yield Problem(
            child(at, "verbs"),
            f"verbs {', '.join(unknown)} are not allowed (escalate, bind and impersonate climb out of "
            "RBAC; use and custom verbs grant what envhub cannot check)",
        )
    pairs = [
        (str(group), str(resource))
        for group in listed(rule.get("apiGroups"))
        for resource in listed(rule.get("resources"))
    ]
    tunnels = sorted({resource for _group, resource in pairs if resource in TUNNELS})
    if tunnels:
        yield Problem(child(at, "resources"), f"{', '.join(tunnels)} open a shell or tunnel into pods")
    changed = sorted(verbs & CHANGE_VERBS)
    if changed:
        refused = sorted({_named(p) for p in pairs if p not in WRITABLE and p[1] not in TUNNELS})
        if refused:
            yield Problem(
                child(at, "resources"),
                f"{'/'.join(changed)} on {', '.join(refused)} would let a workload create what envhub "
                f"checks without envhub (writable: {_WRITABLE_HINT})",
            )
    if verbs & DELETE_VERBS:
        refused = sorted({_named(p) for p in pairs if p not in WRITABLE | DELETABLE and p[1] not in TUNNELS})
        if refused:
            yield Problem(child(at, "resources"), f"delete on {', '.join(refused)} could undo the isolation")


def _named(pair: tuple[str, str]) -> str:
    group, resource = pair
    return f"{group}/{resource}" if group else resource


def role_problems(obj: dict[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    for index, rule in enumerate(listed(obj.get("rules"))):
        if isinstance(rule, dict):
            problems += _rule_problems(rule, f"rules[{index}]")
    return problems


def binding_problems(obj: dict[str, Any]) -> list[Problem]:
    """A RoleBinding's role and subjects (their namespaces are checked with every other field's)."""
    problems: list[Problem] = []
    ref = mapping(obj.get("roleRef"))
    if ref.get("kind") == "ClusterRole" and ref.get("name") not in SAFE_CLUSTER_ROLES:
        problems.append(
            Problem(
                "roleRef.name",
                f"it binds ClusterRole {ref.get('name')!r} "
                f"(only {', '.join(sorted(SAFE_CLUSTER_ROLES))} may be bound; define a Role)",
            )
        )
    elif ref.get("kind") not in ("Role", "ClusterRole"):
        problems.append(Problem("roleRef.kind", f"{ref.get('kind')!r} is not a Role"))
    for index, subject in enumerate(listed(obj.get("subjects"))):
        subject = mapping(subject)
        if subject.get("kind") != "ServiceAccount":
            problems.append(
                Problem(
                    f"subjects[{index}].kind",
                    f"subject {subject.get('kind')} {subject.get('name')!r} is not a ServiceAccount "
                    "of this namespace",
                )
            )
    return problems
