"""kubectl access for people follows their teams.

Every environment namespace gets two Roles and their RoleBindings for the team
that owns it, bound to groups an OIDC-authenticated user carries:

* ``envhub:team:<team>`` (every member): read what runs, its logs and events,
  never Secrets;
* ``envhub:team:<team>:edit`` (members, admins, owners): also restart pods
  (delete them) and scale.

Neither may create or change workloads, RBAC, quotas or network policies:
envhub applies an environment's objects from its desired state, and a person
with ``edit`` could otherwise run a host-network pod or undo the isolation
(Kubernetes v1.20 has no Pod Security admission to stop it). Shells stay with
envhub's terminal, where sessions are authorized per environment, audited and
recorded; ``kubectl exec`` would go around all three. (envhub creates these
Roles without ``escalate``, so it holds what they grant: its workers open no
shells either.)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from envhub.domain.kube.names import metadata

GROUP_PREFIX = "envhub:team:"
TEAM_VIEW = "envhub-team-view"
TEAM_EDIT = "envhub-team-edit"
RESERVED = frozenset(
    {("Role", TEAM_VIEW), ("Role", TEAM_EDIT), ("RoleBinding", TEAM_VIEW), ("RoleBinding", TEAM_EDIT)}
)

_READ = ["get", "list", "watch"]
# Sorted, so the rendered Roles are byte-for-byte stable.
_READABLE: dict[str, list[str]] = {
    "": [
        "configmaps",
        "endpoints",
        "events",
        "limitranges",
        "persistentvolumeclaims",
        "pods",
        "pods/log",
        "resourcequotas",
        "serviceaccounts",
        "services",
    ],
    "apps": ["daemonsets", "deployments", "replicasets", "statefulsets"],
    "autoscaling": ["horizontalpodautoscalers"],
    "batch": ["cronjobs", "jobs"],
    "networking.k8s.io": ["ingresses", "networkpolicies"],
}
_OPERATE: list[dict[str, Any]] = [
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]},
    {
        "apiGroups": ["apps"],
        "resources": ["deployments/scale", "statefulsets/scale"],
        "verbs": ["get", "patch", "update"],
    },
]
_EDIT_ROLES = frozenset({"owner", "admin", "member"})


def team_group(team: str, *, edit: bool = False) -> str:
    return f"{GROUP_PREFIX}{team}{':edit' if edit else ''}"


def kube_groups(memberships: Iterable[tuple[str, str]]) -> list[str]:
    """The groups a person's kubectl token carries, from (team name, team role) pairs."""
    groups: set[str] = set()
    for team, role in memberships:
        groups.add(team_group(team))
        if role in _EDIT_ROLES:
            groups.add(team_group(team, edit=True))
    return sorted(groups)


def _read_rules() -> list[dict[str, Any]]:
    return [
        {"apiGroups": [group], "resources": list(resources), "verbs": list(_READ)}
        for group, resources in _READABLE.items()
    ]


def render_team_access(*, namespace: str, team: str, labels: dict[str, str]) -> list[dict[str, Any]]:
    """Role view, Role edit, then their RoleBindings to the team's groups."""
    rbac = "rbac.authorization.k8s.io/v1"
    roles = [
        {
            "apiVersion": rbac,
            "kind": "Role",
            "metadata": metadata(TEAM_VIEW, namespace, labels),
            "rules": _read_rules(),
        },
        {
            "apiVersion": rbac,
            "kind": "Role",
            "metadata": metadata(TEAM_EDIT, namespace, labels),
            "rules": _read_rules() + [dict(rule) for rule in _OPERATE],
        },
    ]
    bindings = [
        {
            "apiVersion": rbac,
            "kind": "RoleBinding",
            "metadata": metadata(name, namespace, labels),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}],
        }
        for name, group in ((TEAM_VIEW, team_group(team)), (TEAM_EDIT, team_group(team, edit=True)))
    ]
    return roles + bindings
