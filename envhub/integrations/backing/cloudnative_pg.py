"""PostgreSQL as a CloudNativePG ``Cluster`` in each environment's namespace (port ``NamespacedDatabases``).

Whether the operator is installed is the cluster's answer to API discovery
(``serves``, the Kubernetes runtime's); what to apply is rendered by
:mod:`envhub.domain.kube.cloudnative_pg`. This adapter holds what the
operator of envhub chose: the image repository, and the object store that
backups go to (none: the Clusters run without backups, and say so).
"""

from __future__ import annotations

from collections.abc import Callable

from envhub.domain.kube.cloudnative_pg import (
    API_VERSION,
    CLUSTER_KIND,
    DEFAULT_IMAGE,
    PORT,
    SCHEDULED_BACKUP_KIND,
    BackupStore,
    primary_service,
    render_postgres_cluster,
)
from envhub.integrations.backing.base import Access, BackingKind, Placement


class CloudNativePostgres:
    """Renders an instance's Cluster; ``serves(api_version, kind)`` says what the cluster serves."""

    def __init__(
        self,
        serves: Callable[[str, str], bool],
        *,
        image: str = DEFAULT_IMAGE,
        store: BackupStore | None = None,
    ) -> None:
        self._serves = serves
        self.image = image
        self.store = store

    @property
    def backs_up(self) -> bool:
        return self.store is not None

    def available(self) -> bool:
        if not self._serves(API_VERSION, CLUSTER_KIND):
            return False
        # Backups are scheduled through the operator's second kind: an operator that lacks it is too old.
        return self.store is None or self._serves(API_VERSION, SCHEDULED_BACKUP_KIND)

    def place(
        self, name: str, *, serial: int, password: str, version: str, size: str, deployment: bool
    ) -> Placement:
        objects = render_postgres_cluster(
            name,
            serial=serial,
            password=password,
            version=version,
            size=size,
            deployment=deployment,
            image=self.image,
            store=self.store,
        )
        access = Access(
            kind=BackingKind.postgres,
            host=primary_service(name),
            port=PORT,
            username=name,
            password=password,
            database=name,
        )
        return Placement(access=access, objects=tuple(objects))
