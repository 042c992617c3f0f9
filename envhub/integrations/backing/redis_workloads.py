"""Redis on Kubernetes: a workload in each environment's own namespace (issue 13).

The operator's choice for the Kubernetes runtime, where envhub runs no server
of its own: each environment's Redis is a pod of the environment, applied by
the runtime with its other objects (``domain/kube/redis.py`` renders them),
under its quota and network policies, and gone with its namespace. So this
backend makes nothing and holds nothing: :meth:`RedisWorkloads.instance`
describes the workload (the pinned image, the instance's password, its
persistence) and says where the environment's workloads reach it.
"""

from __future__ import annotations

from dataclasses import dataclass

from envhub.domain.kube import namespace_for
from envhub.domain.kube.redis import PORT, redis_host
from envhub.domain.specs import EnvironmentTarget, ServiceWorkload
from envhub.integrations.backing.base import Access, BackingKind

# Redis 7.2, the last BSD-licensed line; the official image's entrypoint and its redis user (999).
DEFAULT_IMAGE = "docker.io/library/redis:7.2.7"


@dataclass(frozen=True, slots=True)
class RedisWorkloads:
    """:class:`~envhub.integrations.backing.base.WorkloadCaches` as a Redis Deployment per environment."""

    image: str = DEFAULT_IMAGE
    storage_class: str = ""  # "": the cluster's default StorageClass

    def instance(
        self, target: EnvironmentTarget, service: str, *, password: str, persistent: bool, size: str
    ) -> tuple[Access, ServiceWorkload]:
        if not password:
            raise ValueError("a Redis instance needs a password")
        workload = ServiceWorkload(
            name=service,
            kind="redis",
            image=self.image,
            password=password,
            persistent=persistent,
            size=size,
            storage_class=self.storage_class,
        )
        # No user name: AUTH <password> is the default user's, and every client speaks it.
        access = Access(
            kind=BackingKind.redis,
            host=redis_host(namespace_for(target), service),
            port=PORT,
            username="",
            password=password,
        )
        return access, workload

    def remove(self, name: str) -> None:
        return None  # the runtime prunes the objects, or deletes the namespace with them

    def names(self) -> set[str]:
        return set()
