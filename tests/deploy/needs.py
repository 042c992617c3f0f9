"""What envhub's processes ask of the Kubernetes API, derived from envhub's code.

The chart's ClusterRoles must grant these and little else. Where the code
itself lists what it writes (the kinds ``render.py`` renders, the workload
Role's rules, the kinds a user manifest may hold, what the legacy prune lists),
the list is read from there, so a kind added to envhub shows up here without
anyone remembering the chart. The requests that live in code paths (watches,
waits, logs, exec) are listed by hand, each with the function that makes it.

A need is ``(api group, resource, verb)``; ``resource`` may be a subresource.
"""

from __future__ import annotations

from typing import Any

from envhub.domain.kube import guards, render
from envhub.domain.kube.access import render_team_access
from envhub.domain.kube.names import WORKLOAD_ACCOUNT
from envhub.domain.kube.rbac import render_rbac
from envhub.runtime.kubernetes import pruning
from envhub.runtime.kubernetes.discovery import RENDERED_KINDS

Need = tuple[str, str, str]
RBAC = "rbac.authorization.k8s.io"

# The kinds a user manifest may hold, as the renderer orders them (Helm's order):
# each one's group and resource. A kind added to render._KIND_ORDER without an
# entry here fails test_every_manifest_kind_is_mapped.
MANIFEST_RESOURCES: dict[str, tuple[str, str]] = {
    "ServiceAccount": ("", "serviceaccounts"),
    "Secret": ("", "secrets"),
    "ConfigMap": ("", "configmaps"),
    "PersistentVolumeClaim": ("", "persistentvolumeclaims"),
    "Role": (RBAC, "roles"),
    "RoleBinding": (RBAC, "rolebindings"),
    "Service": ("", "services"),
    "Pod": ("", "pods"),
    "ReplicationController": ("", "replicationcontrollers"),
    "ReplicaSet": ("apps", "replicasets"),
    "Deployment": ("apps", "deployments"),
    "StatefulSet": ("apps", "statefulsets"),
    "DaemonSet": ("apps", "daemonsets"),
    "HorizontalPodAutoscaler": ("autoscaling", "horizontalpodautoscalers"),
    "Job": ("batch", "jobs"),
    "CronJob": ("batch", "cronjobs"),
    "PodDisruptionBudget": ("policy", "poddisruptionbudgets"),
}


def group_of(api_version: str) -> str:
    return api_version.rpartition("/")[0] if "/" in api_version else ""


def manifest_kinds() -> tuple[str, ...]:
    return render._KIND_ORDER


def workload_role_rules() -> list[dict[str, Any]]:
    _account, role, _binding = render_rbac(namespace="example", labels={})
    rules: list[dict[str, Any]] = role["rules"]
    return rules


def team_role_rules() -> list[dict[str, Any]]:
    """The rules of the owning team's kubectl Roles (view and edit, access.py)."""
    roles = [
        obj for obj in render_team_access(namespace="example", team="t", labels={}) if obj["kind"] == "Role"
    ]
    return [rule for role in roles for rule in role["rules"]]


# Rendered only for the ingress URL provider (domain/kube/ingress.py).
INGRESS_KIND = ("networking.k8s.io/v1", "Ingress")


def worker_needs(*, ingress: bool = False) -> set[Need]:
    """The workers: apply, prune, wait, status, stop and destroy environments."""
    needs: set[Need] = set()
    # Every kind render.py writes is server-side applied (patch, and create when
    # new) and pruned when it drops out (discovery.Applier.apply/delete).
    for (api_version, kind), resource in RENDERED_KINDS.items():
        if (api_version, kind) == INGRESS_KIND and not ingress:
            continue
        needs |= {(group_of(api_version), resource.plural, verb) for verb in ("create", "patch", "delete")}
    # ...and so is every kind a user manifest may hold.
    for kind in manifest_kinds():
        group, resource = MANIFEST_RESOURCES[kind]
        needs |= {(group, resource, verb) for verb in ("create", "patch", "delete")}
    # Pruning of an environment that predates the inventory lists these kinds.
    for api_version, kind in pruning._LISTED_KINDS:
        needs.add((group_of(api_version), RENDERED_KINDS[(api_version, kind)].plural, "list"))
    # envhub creates the workload Role and the team's Roles without "escalate":
    # it must hold every rule itself.
    for rule in workload_role_rules() + team_role_rules():
        for group in rule["apiGroups"]:
            needs |= {(group, resource, verb) for resource in rule["resources"] for verb in rule["verbs"]}
    needs |= {
        # runtime._namespace_object, managed_environments: namespaces by label;
        # watching.NamespaceWatcher: a watch over envhub's namespaces (the end of a teardown).
        ("", "namespaces", "list"),
        ("", "namespaces", "watch"),
        # waiting.wait_quota_counted: a watch on the quota until it is counted.
        ("", "resourcequotas", "list"),
        ("", "resourcequotas", "watch"),
        # watching.DeploymentWatcher (every namespace), waiting.RolloutWait, runtime.status.
        ("apps", "deployments", "list"),
        ("apps", "deployments", "watch"),
        # waiting.RolloutWait: a watch per kind of workload an apply still waits for.
        ("apps", "statefulsets", "watch"),
        ("apps", "daemonsets", "watch"),
        ("batch", "jobs", "watch"),
        # runtime._pods, readiness explanations.
        ("", "pods", "list"),
        # runtime.stop scales Deployments to zero.
        ("apps", "deployments/scale", "patch"),
        # TokenRequest: short-lived tokens of environment ServiceAccounts.
        ("", "serviceaccounts/token", "create"),
        # apiserver.ApiServerAddresses: the kubernetes Service and its endpoints,
        # for the egress deny list of allowlists with address blocks.
        ("", "services", "get"),
        ("", "endpoints", "get"),
        # devcontainer.run_lifecycle: a workspace's lifecycle commands through exec (an exec
        # WebSocket is a GET, authorized as "get" by older API servers and "create" by newer ones).
        ("", "pods/exec", "get"),
        ("", "pods/exec", "create"),
    }
    return needs


def worker_binds() -> set[str]:
    """ClusterRoles user manifests may bind (guards.py), which the workers bind on their behalf."""
    return set(guards.SAFE_CLUSTER_ROLES)


# The local URL provider's gateway: the API server's service proxy, one verb per HTTP method.
SERVICE_PROXY: set[Need] = {
    ("", "services/proxy", verb) for verb in ("get", "create", "update", "patch", "delete")
}


def web_needs(*, local_urls: bool = True) -> set[Need]:
    """The web: inspect, logs and terminals (runtime.inspect, logs, exec), the gateway's relay."""
    return (SERVICE_PROXY if local_urls else set()) | {
        ("", "namespaces", "list"),  # runtime._namespace_object
        ("", "pods", "list"),  # runtime._pod, inspect
        ("", "events", "list"),  # runtime.inspect
        ("", "pods/log", "get"),  # streams.follow_log
        # streams.KubernetesExecSession: a WebSocket GET, authorized as "get" by
        # older API servers (1.20 here) and as "create" by newer ones.
        ("", "pods/exec", "get"),
        ("", "pods/exec", "create"),
        # credentials.environment_credentials: a TokenRequest (see WEB_NAMED).
        ("", "serviceaccounts/token", "create"),
        # git_credentials.git_credentials: a TokenReview of a workspace pod's token (runtime.
        # environment_of_token; it writes nothing).
        ("authentication.k8s.io", "tokenreviews", "create"),
    }


# Web needs granted for one object name only: TokenRequests for the workload account.
WEB_NAMED: dict[Need, str] = {("", "serviceaccounts/token", "create"): WORKLOAD_ACCOUNT}


# -- RBAC rules as the API server reads them ----------------------------------------


def allows(
    rules: list[dict[str, Any]], group: str, resource: str, verb: str, name: str | None = None
) -> bool:
    """Whether ``rules`` (a Role's or ClusterRole's) allow ``verb`` on ``group/resource`` (``name``)."""
    base, _, sub = resource.partition("/")
    for rule in rules:
        if "nonResourceURLs" in rule:
            continue
        if not {group, "*"} & set(rule.get("apiGroups") or []):
            continue
        resources = set(rule.get("resources") or [])
        if not (resource in resources or "*" in resources or (sub and f"{base}/*" in resources)):
            continue
        if not {verb, "*"} & set(rule.get("verbs") or []):
            continue
        names = rule.get("resourceNames")
        if names and name not in names:
            continue
        return True
    return False


def granted(rules: list[dict[str, Any]]) -> set[Need]:
    """Every (group, resource, verb) the rules grant, wildcards kept as written."""
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule.get("apiGroups") or []
        for resource in rule.get("resources") or []
        for verb in rule.get("verbs") or []
    }
