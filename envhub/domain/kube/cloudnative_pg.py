"""A managed PostgreSQL as a CloudNativePG ``Cluster`` in the environment's own namespace (issue 13).

When the cluster runs the CloudNativePG operator (its ``postgresql.cnpg.io/v1``
kinds are served), a project's ``postgres`` service becomes one ``Cluster``
per environment instead of a database on a shared server: the operator runs
it, fails it over, and backs it up with its barman integration to the object
store (base backups plus WAL, so point-in-time recovery). envhub only renders
the objects; the Kubernetes runtime applies them with the environment's other
objects, records them, prunes them when the service goes and deletes them
with the namespace.

What is rendered for instance ``envhub_e12_db`` (:func:`render_postgres_cluster`):

* Secret ``envhub-e12-db-owner`` (``kubernetes.io/basic-auth``): the owner's
  user name and the password envhub generated. The Cluster bootstraps its
  owner from it, and lists the owner under ``managed.roles`` with the same
  Secret, so the operator's declarative role management keeps the role's
  password equal to the Secret's: a rotation is a new Secret.
* Cluster ``envhub-e12-db``: one instance for a development environment, two
  (a primary and a standby to fail over to) for a deployment environment; the
  declared major version's image; the declared size as storage; ``initdb``
  making a database and an owner both named after the instance; no superuser
  access (the operator keeps that to itself).
* With an object store: ``backup.barmanObjectStore`` under
  ``s3://<bucket>/cloudnative-pg/<instance>-<serial>`` (the serial is the
  instance record's, so an instance made again never writes into the archive
  of the one before it, which barman would refuse), the store's keys in
  Secret :data:`BACKUP_STORE_SECRET` (or the pod's cloud identity when the
  operator gave none), and the retention policy. A deployment environment
  also gets ``ScheduledBackup`` ``envhub-e12-db-backup`` (its first backup at
  once).

A restore (:class:`Recovery`) makes the Cluster again from an archive: the
instance's own or another environment's, as of one of its base backups. The
Cluster of the new generation writes to an archive of its own
(``<instance>-<serial>-g<generation>``) and bootstraps with ``recovery``
from the source's, through ``externalClusters``. Its data is the source's, so
its database and owner keep the source's name; the owner's password becomes
this instance's (the operator sets it from the owner Secret), so the source
environment's password opens nothing here. On-demand backups are ``Backup``
objects (:func:`render_backup`); the operator reports each one's outcome in
its status, which :func:`backup_report` reads.

Workloads reach the primary at the ``<cluster>-rw`` Service the operator makes.
Objects come without namespace and labels: the renderer of the environment
adds both, as for every object envhub applies.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from typing import Any

from envhub.domain.kube.names import BACKUP_STORE_SECRET, MANAGED_SERVICE_LABEL

API_VERSION = "postgresql.cnpg.io/v1"
CLUSTER_KIND = "Cluster"
SCHEDULED_BACKUP_KIND = "ScheduledBackup"
BACKUP_KIND = "Backup"
# What the operator's status.phase of a Cluster says once every instance is up.
HEALTHY_PHASE = "Cluster in healthy state"
# On the Cluster: which generation of the instance it is (a restore makes the next one).
GENERATION_ANNOTATION = "envhub.dev/generation"
RECOVERY_SOURCE = "origin"
# The operator's PostgreSQL images, tagged by major version.
DEFAULT_IMAGE = "ghcr.io/cloudnative-pg/postgresql"
DEFAULT_VERSION = "17"
DEFAULT_SIZE = "1Gi"
# CloudNativePG's cron has six fields, seconds first: 03:00 every day.
DEFAULT_SCHEDULE = "0 0 3 * * *"
DEFAULT_RETENTION = "30d"
PORT = 5432
ACCESS_KEY_ID = "ACCESS_KEY_ID"
ACCESS_SECRET_KEY = "ACCESS_SECRET_KEY"  # noqa: S105 (a key name)
ACCESS_REGION = "ACCESS_REGION"
BACKUP_PREFIX = "cloudnative-pg"
# CloudNativePG's own pattern for retentionPolicy; its cron: six fields.
RETENTION = re.compile(r"^[1-9][0-9]*[dwm]$")
SCHEDULE = re.compile(r"^\S+( \S+){5}$")
_INSTANCE = re.compile(r"^[a-z][a-z0-9_]{0,61}[a-z0-9]$")


@dataclass(frozen=True, slots=True)
class BackupStore:
    """The operator's S3-compatible object store, as the Cluster's barman integration uses it.

    Without keys the pods use their own cloud identity (an IAM role on EKS).
    """

    bucket: str
    endpoint_url: str = ""  # empty: AWS S3 itself
    region: str = ""
    access_key_id: str = ""
    secret_access_key: str = field(default="", repr=False)
    schedule: str = DEFAULT_SCHEDULE
    retention: str = DEFAULT_RETENTION

    def __post_init__(self) -> None:
        if not self.bucket:
            raise ValueError("a backup store needs a bucket")
        if bool(self.access_key_id) != bool(self.secret_access_key):
            raise ValueError("give both keys of the backup store, or neither")
        if not SCHEDULE.fullmatch(self.schedule):
            raise ValueError(f"{self.schedule!r} is not a six-field cron schedule (seconds first)")
        if not RETENTION.fullmatch(self.retention):
            raise ValueError(f"{self.retention!r} is not a retention such as 30d, 4w or 6m")


def cluster_name(instance: str, generation: int = 0) -> str:
    """The Cluster of instance ``envhub_e12_db``: ``envhub-e12-db`` (a DNS label, as Kubernetes wants),
    and ``envhub-e12-db-g2`` once two restores made it again: a new generation is a new Cluster
    beside whose name nothing of the old one (pods, volumes, Services) can linger."""
    if not _INSTANCE.fullmatch(instance):
        raise ValueError(f"{instance!r} is not an instance name")
    if generation < 0:
        raise ValueError("generation must not be negative")
    return instance.replace("_", "-") + (f"-g{generation}" if generation else "")


def pod_labels(instance: str) -> dict[str, str]:
    """What the pods of every Cluster of the instance wear (its generations', its checks')."""
    return {MANAGED_SERVICE_LABEL: cluster_name(instance)}


def primary_service(instance: str, generation: int = 0) -> str:
    """The Service the operator points at the primary: where workloads connect."""
    return f"{cluster_name(instance, generation)}-rw"


def owner_secret(instance: str, generation: int = 0) -> str:
    return f"{cluster_name(instance, generation)}-owner"


_RETENTION_DAYS = {"d": 1, "w": 7, "m": 30}


def retention_days(retention: str) -> int:
    """A retention policy ("30d", "4w", "6m") in days, a month taken as 30."""
    if not RETENTION.fullmatch(retention):
        raise ValueError(f"{retention!r} is not a retention such as 30d, 4w or 6m")
    return int(retention[:-1]) * _RETENTION_DAYS[retention[-1]]


@dataclass(frozen=True, slots=True)
class Recovery:
    """Where a restored Cluster's data comes from: an archive, as of one base backup of it.

    ``database`` is the name of the database and owner inside that data (the
    instance's that first made it); ``server`` the Cluster name barman filed
    it under; ``path`` the archive (a ``destinationPath``); ``backup_id``
    barman's id of the base backup ("" for the newest).
    """

    database: str
    server: str
    path: str
    backup_id: str = ""

    def __post_init__(self) -> None:
        if not _INSTANCE.fullmatch(self.database):
            raise ValueError(f"{self.database!r} is not an instance name")
        if not self.path.startswith("s3://"):
            raise ValueError(f"{self.path!r} is not an archive in the object store")


@dataclass(frozen=True, slots=True)
class BackupReport:
    """A ``Backup`` object as its status tells it: what the operator did, and where it put it."""

    name: str
    cluster: str
    phase: str  # the operator's: "", "started", "running", "completed", "failed", ...
    started_at: str
    stopped_at: str
    backup_id: str
    path: str  # the archive (status.destinationPath)
    server: str  # status.serverName
    error: str
    scheduled: bool  # made by a ScheduledBackup

    @property
    def finished(self) -> bool:
        return self.phase in ("completed", "failed")


def archive_name(instance: str, serial: int, generation: int = 0) -> str:
    """The archive of one generation of an instance: a restore starts a new one (barman never writes
    into an archive that holds another cluster's history)."""
    return f"{instance}-{serial}" + (f"-g{generation}" if generation else "")


def backup_path(store: BackupStore, instance: str, serial: int, generation: int = 0) -> str:
    """Where the instance's base backups and WAL go (barman adds the Cluster's name below it)."""
    return f"s3://{store.bucket}/{BACKUP_PREFIX}/{archive_name(instance, serial, generation)}"


def _data(values: dict[str, str]) -> dict[str, str]:
    return {key: base64.b64encode(value.encode()).decode() for key, value in sorted(values.items())}


def _secret(name: str, kind: str, values: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": kind,
        "data": _data(values),
    }


def render_store_secret(store: BackupStore) -> dict[str, Any] | None:
    """Secret :data:`BACKUP_STORE_SECRET` with the store's keys; None when the pods use their identity."""
    if not store.access_key_id:
        return None
    values = {ACCESS_KEY_ID: store.access_key_id, ACCESS_SECRET_KEY: store.secret_access_key}
    if store.region:
        values[ACCESS_REGION] = store.region
    return _secret(BACKUP_STORE_SECRET, "Opaque", values)


def _barman(store: BackupStore, path: str) -> dict[str, Any]:
    credentials: dict[str, Any]
    if store.access_key_id:
        credentials = {
            "accessKeyId": {"name": BACKUP_STORE_SECRET, "key": ACCESS_KEY_ID},
            "secretAccessKey": {"name": BACKUP_STORE_SECRET, "key": ACCESS_SECRET_KEY},
        }
        if store.region:  # the operator takes the region from a Secret too
            credentials["region"] = {"name": BACKUP_STORE_SECRET, "key": ACCESS_REGION}
    else:
        credentials = {"inheritFromIAMRole": True}
    barman: dict[str, Any] = {
        "destinationPath": path,
        "s3Credentials": credentials,
        "wal": {"compression": "gzip"},
        "data": {"compression": "gzip"},
    }
    if store.endpoint_url:
        barman["endpointURL"] = store.endpoint_url
    return barman


def _recovering(
    store: BackupStore, recovery: Recovery, *, secret: str = ""
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A Cluster's ``bootstrap.recovery`` from ``recovery``'s archive (its owner's password from Secret
    ``secret``, when given), and the ``externalClusters`` entry that names the archive."""
    source = {**_barman(store, recovery.path), "serverName": recovery.server}
    source.pop("wal", None)  # how WAL is compressed is the archive's to say, not the reader's
    source.pop("data", None)
    recovering: dict[str, Any] = {
        "source": RECOVERY_SOURCE,
        "database": recovery.database,
        "owner": recovery.database,
    }
    if secret:
        recovering["secret"] = {"name": secret}
    if recovery.backup_id:
        recovering["recoveryTarget"] = {"backupID": recovery.backup_id}
    return recovering, [{"name": RECOVERY_SOURCE, "barmanObjectStore": source}]


def render_postgres_cluster(
    instance: str,
    *,
    serial: int,
    password: str,
    version: str = "",
    size: str = "",
    deployment: bool = False,
    image: str = DEFAULT_IMAGE,
    store: BackupStore | None = None,
    generation: int = 0,
    recovery: Recovery | None = None,
) -> list[dict[str, Any]]:
    """The objects of one instance, in apply order: its Secrets, the Cluster, its ScheduledBackup.

    ``serial`` tells this instance from an earlier one of the same name (the
    instance record's id); ``version`` and ``size`` are the declaration's
    ("" takes :data:`DEFAULT_VERSION` and :data:`DEFAULT_SIZE`). ``generation``
    counts the restores that made the Cluster again, ``recovery`` the data the
    current one starts from (none: an empty database).
    """
    if serial < 1:
        raise ValueError("serial must be positive")
    if generation < 0:
        raise ValueError("generation must not be negative")
    if recovery is not None and store is None:
        raise ValueError("a Cluster recovers from the object store: give the store")
    name, secret = cluster_name(instance, generation), owner_secret(instance, generation)
    owner = recovery.database if recovery is not None else instance
    objects = [_secret(secret, "kubernetes.io/basic-auth", {"username": owner, "password": password})]
    bootstrap: dict[str, Any]
    if recovery is None:
        bootstrap = {"initdb": {"database": owner, "owner": owner, "secret": {"name": secret}}}
    else:
        assert store is not None
        recovering, sources = _recovering(store, recovery, secret=secret)
        bootstrap = {"recovery": recovering}
    spec: dict[str, Any] = {
        "instances": 2 if deployment else 1,
        "imageName": f"{image}:{version or DEFAULT_VERSION}",
        "enableSuperuserAccess": False,
        "storage": {"size": size or DEFAULT_SIZE},
        # Its pods are a managed service's: the URL provider's proxies are not let in, and its network
        # policy selects them by it (network.py). Every generation's, and a check's, wear the same.
        "inheritedMetadata": {"labels": pod_labels(instance)},
        "bootstrap": bootstrap,
        "managed": {
            "roles": [{"name": owner, "ensure": "present", "login": True, "passwordSecret": {"name": secret}}]
        },
    }
    if store is not None:
        spec["backup"] = {
            "retentionPolicy": store.retention,
            "barmanObjectStore": _barman(store, backup_path(store, instance, serial, generation)),
        }
        keys = render_store_secret(store)
        if keys is not None:
            objects.append(keys)
    if recovery is not None:
        spec["externalClusters"] = sources
    metadata: dict[str, Any] = {"name": name}
    if generation:
        metadata["annotations"] = {GENERATION_ANNOTATION: str(generation)}
    objects.append({"apiVersion": API_VERSION, "kind": CLUSTER_KIND, "metadata": metadata, "spec": spec})
    if store is not None and deployment:
        objects.append(
            {
                "apiVersion": API_VERSION,
                "kind": SCHEDULED_BACKUP_KIND,
                "metadata": {"name": f"{name}-backup"},
                "spec": {
                    "schedule": store.schedule,
                    "cluster": {"name": name},
                    "method": "barmanObjectStore",
                    "backupOwnerReference": "self",
                    "immediate": True,
                },
            }
        )
    return objects


def check_name(instance: str, check: int) -> str:
    """The scratch Cluster of restore check ``check`` of the instance's backups."""
    return f"{cluster_name(instance)}-c{check}"


def render_check_cluster(
    instance: str,
    check: int,
    *,
    recovery: Recovery,
    store: BackupStore,
    version: str = "",
    size: str = "",
    image: str = DEFAULT_IMAGE,
) -> dict[str, Any]:
    """A scratch Cluster that recovers ``recovery``'s backup to prove it restores (one instance, no
    backups, nothing connects to it); its pods wear the instance's labels, so its network policy
    lets the operator in and the archive be read. Deleted when the check ends."""
    recovering, sources = _recovering(store, recovery)
    return {
        "apiVersion": API_VERSION,
        "kind": CLUSTER_KIND,
        "metadata": {"name": check_name(instance, check)},
        "spec": {
            "instances": 1,
            "imageName": f"{image}:{version or DEFAULT_VERSION}",
            "enableSuperuserAccess": False,
            "storage": {"size": size or DEFAULT_SIZE},
            "inheritedMetadata": {"labels": pod_labels(instance)},
            "bootstrap": {"recovery": recovering},
            "externalClusters": sources,
        },
    }


def cluster_state(obj: dict[str, Any]) -> str:
    """``healthy`` once every instance is up, ``failed`` when the operator gave up, else ``running``."""
    status = obj.get("status") or {}
    phase = str(status.get("phase", ""))
    if phase == HEALTHY_PHASE and status.get("readyInstances") == (obj.get("spec") or {}).get("instances", 1):
        return "healthy"
    if "fail" in phase.lower() or "error" in phase.lower():
        return "failed"
    return "running"


def render_backup(cluster: str, name: str) -> dict[str, Any]:
    """An on-demand ``Backup`` of Cluster ``cluster``, named ``name`` (without namespace and labels)."""
    return {
        "apiVersion": API_VERSION,
        "kind": BACKUP_KIND,
        "metadata": {"name": name},
        "spec": {"cluster": {"name": cluster}, "method": "barmanObjectStore"},
    }


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def backup_report(obj: dict[str, Any]) -> BackupReport | None:
    """What a ``Backup`` object says of itself; None for one that names no Cluster."""
    spec = obj.get("spec") or {}
    cluster = _text((spec.get("cluster") or {}).get("name"))
    if not cluster:
        return None
    status = obj.get("status") or {}
    metadata = obj.get("metadata") or {}
    labels = metadata.get("labels") or {}
    owners = metadata.get("ownerReferences") or []
    return BackupReport(
        name=_text(metadata.get("name")),
        cluster=cluster,
        phase=_text(status.get("phase")),
        started_at=_text(status.get("startedAt")),
        stopped_at=_text(status.get("stoppedAt")),
        backup_id=_text(status.get("backupId")),
        path=_text(status.get("destinationPath")),
        server=_text(status.get("serverName")) or cluster,
        error=_text(status.get("error"))[:2000],
        scheduled="cnpg.io/scheduled-backup" in labels
        or any(owner.get("kind") == SCHEDULED_BACKUP_KIND for owner in owners if isinstance(owner, dict)),
    )


def cluster_generation(obj: dict[str, Any]) -> int:
    """Which generation of its instance a stored Cluster is (0: never restored)."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    value = str(annotations.get(GENERATION_ANNOTATION, "0"))
    return int(value) if value.isdigit() else 0


def cluster_generation_ready(obj: dict[str, Any], generation: int) -> bool:
    """Whether the Cluster is the given generation and the operator reports every instance up."""
    if cluster_generation(obj) != generation:
        return False
    status = obj.get("status") or {}
    wanted = (obj.get("spec") or {}).get("instances", 1)
    return status.get("phase") == HEALTHY_PHASE and status.get("readyInstances") == wanted
