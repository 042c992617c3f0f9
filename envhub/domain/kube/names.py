"""Names and labels of the Kubernetes objects envhub owns in an environment.

The namespace name must be a DNS label (at most 63 characters), readable by a
person running ``kubectl get ns``, and never reused: an environment deleted and
re-created under the same name gets a new id, hence a new namespace, so a slow
namespace deletion can never swallow the new environment's objects.
"""

from __future__ import annotations

from envhub.domain.naming import DNS_LABEL_MAX, scoped_name, validate_label
from envhub.domain.specs import EnvironmentTarget

NAMESPACE_PREFIX = "envhub"

# The API server sets this label on every namespace from v1.21 on; envhub sets it
# on its own namespaces too, so selectors on it also work on v1.20.
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
NAME_LABEL = "app.kubernetes.io/name"
PART_OF_LABEL = "app.kubernetes.io/part-of"
# envhub's own key: user manifests do not set it by accident, so a Service's
# selector never picks up pods of an unrelated workload that reuses a name.
SERVICE_LABEL = "envhub.dev/service"
# On the pods of a managed service envhub runs in the namespace (a project's Redis,
# redis.py): its name. The allow-ingress policy leaves these pods out.
MANAGED_SERVICE_LABEL = "envhub.dev/managed-service"

# Fixed names of the isolation objects envhub renders in every namespace.
QUOTA_NAME = "envhub-quota"
LIMIT_RANGE_NAME = "envhub-limits"
WORKLOAD_ACCOUNT = "envhub-workload"
SECRETS_NAME = "envhub-secrets"
SECRETS_ANNOTATION = "envhub.dev/secrets-digest"
# The object store's keys for the CloudNativePG clusters of managed services
# (cloudnative_pg.py). Unlike the project's secrets, no workload may use it: it
# reaches every environment's backups. guards.py refuses objects that name it.
BACKUP_STORE_SECRET = "envhub-backup-store"  # noqa: S105 (a Secret's name, not a secret)
POLICY_DEFAULT_DENY = "envhub-default-deny"
POLICY_ALLOW_DNS = "envhub-allow-dns"
POLICY_ALLOW_SAME_NAMESPACE = "envhub-allow-same-namespace"
POLICY_ALLOW_INGRESS = "envhub-allow-ingress"
POLICY_ALLOW_EGRESS = "envhub-allow-egress"
# A workspace's way to envhub for git credentials (git_credentials.py).
POLICY_ALLOW_ENVHUB = "envhub-allow-envhub"
GIT_HELPER_CONFIG_MAP = "envhub-git-credentials"

# (kind, name) pairs user manifests may not define: they would replace envhub's.
RESERVED_OBJECTS: frozenset[tuple[str, str]] = frozenset(
    {
        ("ResourceQuota", QUOTA_NAME),
        ("LimitRange", LIMIT_RANGE_NAME),
        ("ServiceAccount", WORKLOAD_ACCOUNT),
        ("Role", WORKLOAD_ACCOUNT),
        ("RoleBinding", WORKLOAD_ACCOUNT),
        ("Secret", SECRETS_NAME),
        ("Secret", BACKUP_STORE_SECRET),
        # The owning team's kubectl access (access.py).
        ("Role", "envhub-team-view"),
        ("Role", "envhub-team-edit"),
        ("RoleBinding", "envhub-team-view"),
        ("RoleBinding", "envhub-team-edit"),
        ("ConfigMap", GIT_HELPER_CONFIG_MAP),
    }
    | {
        ("NetworkPolicy", name)
        for name in (
            POLICY_DEFAULT_DENY,
            POLICY_ALLOW_DNS,
            POLICY_ALLOW_SAME_NAMESPACE,
            POLICY_ALLOW_INGRESS,
            POLICY_ALLOW_EGRESS,
            POLICY_ALLOW_ENVHUB,
        )
    }
)


def namespace_name(
    *, team: str, project: str, environment: str, environment_id: int, prefix: str = NAMESPACE_PREFIX
) -> str:
    """``envhub-<team>-<project>-<environment>-<id>``, shortened with a hash when too long.

    The id is always kept whole at the end, after the last '-': it is all digits
    and unique per environment, so two environments never share a namespace,
    whatever their names. Only the readable part in front is cut (and hashed,
    see :func:`envhub.domain.naming.scoped_name`) to fit 63 characters.
    """
    if environment_id < 0:
        raise ValueError("environment_id must not be negative")
    suffix = f"-{environment_id}"
    readable = scoped_name(prefix, team, project, environment, limit=DNS_LABEL_MAX - len(suffix))
    return validate_label(readable + suffix, field="namespace")


def is_namespace_of(name: str, environment_id: int, *, prefix: str = NAMESPACE_PREFIX) -> bool:
    """Whether ``name`` is one :func:`namespace_name` gives environment ``environment_id``.

    Labels alone never decide which namespace is an environment's: anyone who
    can label a namespace could otherwise have envhub open shells in it, mint
    tokens there or delete it as an orphan. The name must be envhub's too:
    the prefix in front, the id whole at the end.
    """
    suffix = f"-{environment_id}"
    return (
        environment_id >= 0
        and name.startswith(f"{prefix}-")
        and name.endswith(suffix)
        and len(name) > len(prefix) + len(suffix) + 1
        and len(name) <= DNS_LABEL_MAX
    )


def namespace_for(target: EnvironmentTarget, *, prefix: str = NAMESPACE_PREFIX) -> str:
    """The namespace of ``target`` (see :func:`namespace_name`)."""
    return namespace_name(
        team=target.team,
        project=target.project,
        environment=target.name,
        environment_id=target.id,
        prefix=prefix,
    )


def metadata(name: str, namespace: str | None, labels: dict[str, str]) -> dict[str, object]:
    """``metadata`` of an object envhub renders; labels are copied, never shared."""
    meta: dict[str, object] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    meta["labels"] = dict(labels)
    return meta
