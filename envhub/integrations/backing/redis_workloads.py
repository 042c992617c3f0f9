"""Redis on Kubernetes: a workload in each environment's own namespace (port ``NamespacedCaches``, issue 13).

The operator's choice for the Kubernetes runtime, where envhub runs no server
of its own: each environment's Redis is a pod of the environment, applied by
the runtime with its other objects, under its quota and network policies, and
gone with its namespace. Like CloudNativePG's adapter, this backend makes
nothing and holds nothing: :meth:`RedisWorkloads.place` renders the objects
(``domain/kube/redis.py``) with the operator's pinned image and storage class
and the instance's password, and says where the environment's workloads reach
it.
"""

from __future__ import annotations

from dataclasses import dataclass

from envhub.domain.kube.redis import PORT, redis_host, render_redis
from envhub.integrations.backing.base import Access, BackingKind, Placement

# Redis 7.2, the last BSD-licensed line; the official image's entrypoint and its redis user (999).
DEFAULT_IMAGE = "docker.io/library/redis:7.2.7"


@dataclass(frozen=True, slots=True)
class RedisWorkloads:
    """:class:`~envhub.integrations.backing.base.NamespacedCaches` as a Redis Deployment per environment."""

    image: str = DEFAULT_IMAGE
    storage_class: str = ""  # "": the cluster's default StorageClass

    def place(self, service: str, *, namespace: str, password: str, persistent: bool, size: str) -> Placement:
        if not password:
            raise ValueError("a Redis instance needs a password")
        objects = render_redis(
            service,
            password=password,
            image=self.image,
            persistent=persistent,
            size=size,
            storage_class=self.storage_class,
        )
        # No user name: AUTH <password> is the default user's, and every client speaks it.
        access = Access(
            kind=BackingKind.redis,
            host=redis_host(namespace, service),
            port=PORT,
            username="",
            password=password,
        )
        return Placement(access=access, objects=tuple(objects))
