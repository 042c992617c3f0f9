"""PostgreSQL as a CloudNativePG ``Cluster`` in each environment's namespace (port ``NamespacedDatabases``).

Whether the operator is installed is the cluster's answer to API discovery
(``serves``, the Kubernetes runtime's); what to apply is rendered by
:mod:`envhub.domain.kube.cloudnative_pg`. This adapter holds what the
operator of envhub chose: the image repository, and the object store that
backups go to (none: the Clusters run without backups, and say so). Through
the same runtime it reads the operator's ``Backup`` objects, asks for one,
and removes a Cluster that a restore makes again.
"""

from __future__ import annotations

from typing import Any, Protocol

from envhub.domain.kube.cloudnative_pg import (
    API_VERSION,
    BACKUP_KIND,
    CLUSTER_KIND,
    DEFAULT_IMAGE,
    PORT,
    SCHEDULED_BACKUP_KIND,
    BackupReport,
    BackupStore,
    Recovery,
    backup_report,
    check_name,
    cluster_generation_ready,
    cluster_name,
    cluster_state,
    primary_service,
    render_backup,
    render_check_cluster,
    render_postgres_cluster,
    retention_days,
)
from envhub.errors import Unsupported
from envhub.integrations.backing.base import Access, BackingKind, Placement


class ClusterKinds(Protocol):
    """What this adapter needs of a cluster runtime (``KindCatalog``, the Kubernetes runtime's)."""

    def serves(self, api_version: str, kind: str) -> bool: ...

    def environment_objects(self, api_version: str, kind: str) -> list[tuple[int, dict[str, Any]]]: ...

    def create_object(self, environment_id: int, obj: dict[str, Any]) -> bool: ...

    def read_object(
        self, environment_id: int, api_version: str, kind: str, name: str
    ) -> dict[str, Any] | None: ...

    def delete_object(self, environment_id: int, api_version: str, kind: str, name: str) -> bool: ...


class CloudNativePostgres:
    """Renders an instance's Cluster, and reads and asks for its operator's backups."""

    def __init__(
        self,
        kinds: ClusterKinds,
        *,
        image: str = DEFAULT_IMAGE,
        store: BackupStore | None = None,
    ) -> None:
        self._kinds = kinds
        self.image = image
        self.store = store

    @property
    def backs_up(self) -> bool:
        return self.store is not None

    @property
    def keep_days(self) -> int | None:
        return retention_days(self.store.retention) if self.store is not None else None

    def available(self) -> bool:
        if not self._kinds.serves(API_VERSION, CLUSTER_KIND):
            return False
        # Backups are scheduled through the operator's second kind: an operator that lacks it is too old.
        return self.store is None or self._kinds.serves(API_VERSION, SCHEDULED_BACKUP_KIND)

    def place(
        self,
        name: str,
        *,
        serial: int,
        password: str,
        version: str,
        size: str,
        deployment: bool,
        generation: int = 0,
        recovery: Recovery | None = None,
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
            generation=generation,
            recovery=recovery,
        )
        database = recovery.database if recovery is not None else name
        access = Access(
            kind=BackingKind.postgres,
            host=primary_service(name, generation),
            port=PORT,
            username=database,
            password=password,
            database=database,
        )
        return Placement(access=access, objects=tuple(objects))

    def _store(self) -> BackupStore:
        if self.store is None:
            raise Unsupported(
                "CloudNativePG clusters here have no backups: envhub has no object store",
                hint="Configure ENVHUB_OBJECT_STORE_* so the clusters archive to it.",
            )
        return self.store

    def reports(self) -> list[tuple[int, BackupReport]]:
        if not self._kinds.serves(API_VERSION, BACKUP_KIND):
            return []
        found = []
        for environment_id, obj in self._kinds.environment_objects(API_VERSION, BACKUP_KIND):
            report = backup_report(obj)
            if report is not None:
                found.append((environment_id, report))
        return found

    def start_backup(self, environment_id: int, name: str, generation: int, backup: str) -> bool:
        self._store()
        return self._kinds.create_object(
            environment_id, render_backup(cluster_name(name, generation), backup)
        )

    def start_check(
        self, environment_id: int, name: str, check: int, recovery: Recovery, *, version: str, size: str
    ) -> bool:
        store = self._store()
        scratch = render_check_cluster(
            name, check, recovery=recovery, store=store, version=version, size=size, image=self.image
        )
        return self._kinds.create_object(environment_id, scratch)

    def check_state(self, environment_id: int, name: str, check: int) -> str | None:
        found = self._kinds.read_object(environment_id, API_VERSION, CLUSTER_KIND, check_name(name, check))
        return None if found is None else cluster_state(found)

    def end_check(self, environment_id: int, name: str, check: int) -> None:
        self._kinds.delete_object(environment_id, API_VERSION, CLUSTER_KIND, check_name(name, check))

    def generation_ready(self, environment_id: int, name: str, generation: int) -> bool | None:
        found = self._kinds.read_object(
            environment_id, API_VERSION, CLUSTER_KIND, cluster_name(name, generation)
        )
        if found is None:
            return None
        return cluster_generation_ready(found, generation)
