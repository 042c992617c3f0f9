"""The identity workloads run as: a ServiceAccount with read-only rights in its namespace.

envhub's own Deployments do not mount its token at all. The account exists so
user manifests that do need the API (a dashboard listing pods, a sidecar
watching ConfigMaps) get a least-privilege identity to opt into, instead of
the namespace's ``default`` account. It can read, never write: write access to
NetworkPolicies, quotas or RBAC from inside the namespace would let a pod undo
the isolation, and Secrets are left out on purpose.
"""

from __future__ import annotations

from typing import Any

from envhub.domain.kube.names import WORKLOAD_ACCOUNT, metadata

READ_VERBS = ["get", "list", "watch"]
# Sorted, so the rendered Role is byte-for-byte stable.
_READABLE: dict[str, list[str]] = {
    "": ["configmaps", "endpoints", "events", "pods", "pods/log", "services"],
    "apps": ["deployments", "replicasets", "statefulsets"],
    "batch": ["cronjobs", "jobs"],
}


def render_rbac(*, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
    """ServiceAccount, Role and RoleBinding named ``envhub-workload``, in that order."""
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(WORKLOAD_ACCOUNT, namespace, labels),
        # Pods must ask for the token (automountServiceAccountToken: true) to get it.
        "automountServiceAccountToken": False,
    }
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": metadata(WORKLOAD_ACCOUNT, namespace, labels),
        "rules": [
            {"apiGroups": [group], "resources": list(resources), "verbs": list(READ_VERBS)}
            for group, resources in _READABLE.items()
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": metadata(WORKLOAD_ACCOUNT, namespace, labels),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": WORKLOAD_ACCOUNT},
        "subjects": [{"kind": "ServiceAccount", "name": WORKLOAD_ACCOUNT, "namespace": namespace}],
    }
    return [account, role, binding]
