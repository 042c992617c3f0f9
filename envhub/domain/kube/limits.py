"""How much of the cluster one environment may use: ResourceQuota and LimitRange.

A project asks for a quota (:class:`~envhub.domain.workloads.QuotaSpec`); the
platform operator caps every environment (:class:`PlatformLimits`). The ask is
clamped to the cap rather than refused, so raising or lowering the cap never
makes an existing spec invalid; :func:`clamp_quota` says which fields it cut so
the caller can tell the user.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from envhub.domain.kube.names import LIMIT_RANGE_NAME, QUOTA_NAME, metadata
from envhub.domain.kube.quantities import clamp_quantity, parse_quantity, smallest_quantity
from envhub.domain.workloads import QuotaSpec
from envhub.errors import ConfigurationError

POD_SECURITY_LEVELS = ("baseline", "restricted")


@dataclass(frozen=True, slots=True)
class PlatformLimits:
    """The most any single environment may get, whatever its project asks for."""

    # Totals per environment; each caps both the requests and the limits total.
    cpu: str = "8"
    memory: str = "16Gi"
    pods: int = 50
    services: int = 20
    persistent_volume_claims: int = 10
    storage: str = "100Gi"
    # Ceiling of the per-container default limit (LimitRange) a project may ask for.
    container_cpu: str = "4"
    container_memory: str = "8Gi"
    # Pod Security Admission level enforced on environment namespaces (v1.23+;
    # inert labels on older clusters, where the manifest guard holds baseline).
    # "baseline" blocks host access and privileged pods but, unlike
    # "restricted", still runs images that expect to be root. Never lower.
    pod_security: str = "baseline"

    def __post_init__(self) -> None:
        for name in ("cpu", "memory", "storage", "container_cpu", "container_memory"):
            value = getattr(self, name)
            try:
                if parse_quantity(value) <= 0:
                    raise ValueError(f"{value!r} must be positive")
            except ValueError as exc:
                raise ConfigurationError(f"platform limit {name}: {exc}", details={"field": name}) from exc
        for name in ("pods", "services", "persistent_volume_claims"):
            if getattr(self, name) < 0:
                raise ConfigurationError(
                    f"platform limit {name} must not be negative", details={"field": name}
                )
        if self.pod_security not in POD_SECURITY_LEVELS:
            raise ConfigurationError(
                f"pod_security must be one of {', '.join(POD_SECURITY_LEVELS)}: environments run "
                "unreviewed code, so the cluster enforces at least baseline",
                details={"field": "pod_security"},
            )


def clamp_quota(quota: QuotaSpec, limits: PlatformLimits) -> tuple[QuotaSpec, tuple[str, ...]]:
    """``quota`` cut down to ``limits``, and the names of the fields that were cut.

    Per-container defaults are also kept consistent after clamping: a default
    limit never exceeds the environment's total, and a default request never
    exceeds the default limit (the API server rejects such a LimitRange).
    """
    cpu_limit = clamp_quantity(quota.cpu_limit, limits.cpu)
    memory_limit = clamp_quantity(quota.memory_limit, limits.memory)
    cpu = clamp_quantity(quota.cpu, limits.cpu)
    memory = clamp_quantity(quota.memory, limits.memory)
    default_cpu_limit = smallest_quantity(quota.default_cpu_limit, limits.container_cpu, cpu_limit)
    default_memory_limit = smallest_quantity(
        quota.default_memory_limit, limits.container_memory, memory_limit
    )
    wanted: dict[str, Any] = {
        "cpu": cpu,
        "memory": memory,
        "cpu_limit": cpu_limit,
        "memory_limit": memory_limit,
        "pods": min(quota.pods, limits.pods),
        "services": min(quota.services, limits.services),
        "persistent_volume_claims": min(quota.persistent_volume_claims, limits.persistent_volume_claims),
        "storage": clamp_quantity(quota.storage, limits.storage),
        "default_cpu_limit": default_cpu_limit,
        "default_memory_limit": default_memory_limit,
        "default_cpu": smallest_quantity(quota.default_cpu, default_cpu_limit, cpu),
        "default_memory": smallest_quantity(quota.default_memory, default_memory_limit, memory),
    }
    changed = {name: value for name, value in wanted.items() if getattr(quota, name) != value}
    # Report in the model's field order so messages read the same every time.
    order = [name for name in QuotaSpec.model_fields if name in changed]
    return quota.model_copy(update=changed), tuple(order)


def render_resource_quota(quota: QuotaSpec, *, namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    """The environment's totals. Pass a quota already clamped by :func:`clamp_quota`."""
    hard = {
        "limits.cpu": quota.cpu_limit,
        "limits.memory": quota.memory_limit,
        "persistentvolumeclaims": str(quota.persistent_volume_claims),
        "pods": str(quota.pods),
        "requests.cpu": quota.cpu,
        "requests.memory": quota.memory,
        "requests.storage": quota.storage,
        "services": str(quota.services),
        # Node ports and cloud load balancers would expose the environment past
        # its NetworkPolicies and the public-URL provider; quota enforces "none"
        # even on clusters where nothing else checks user manifests.
        "services.loadbalancers": "0",
        "services.nodeports": "0",
    }
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": metadata(QUOTA_NAME, namespace, labels),
        "spec": {"hard": hard},
    }


def render_limit_range(quota: QuotaSpec, *, namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    """Defaults for containers that state no resources.

    A quota on ``limits.cpu`` makes the API server refuse pods without limits;
    these defaults fill them in, so plain third-party manifests still run.
    """
    return {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": metadata(LIMIT_RANGE_NAME, namespace, labels),
        "spec": {
            "limits": [
                {
                    "type": "Container",
                    "default": {"cpu": quota.default_cpu_limit, "memory": quota.default_memory_limit},
                    "defaultRequest": {"cpu": quota.default_cpu, "memory": quota.default_memory},
                }
            ]
        },
    }
