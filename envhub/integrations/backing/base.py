"""The backing-services port: the databases, caches and buckets envhub provisions per environment.

A project declares the services its environments need (issue 13); envhub
makes one *instance* of each per environment on a backend the operator
chose: a PostgreSQL server (one envhub starts from the installed binaries in
the embedded default, or the operator's), Redis (a ``redis-server`` per
environment in the embedded default), an S3-compatible bucket with a key pair
limited to it; or, in the environment's own namespace on Kubernetes, a
PostgreSQL cluster when the cluster runs the CloudNativePG operator
(:class:`NamespacedDatabases`) and a Redis workload (:class:`NamespacedCaches`).
Adapters live beside this module; the wiring module picks them.

The contract every adapter keeps:

* An instance is named by envhub (:func:`instance_name`), from the
  environment's id and the service's name, never by the adapter. The name is
  the database, the role, the Redis folder, the bucket's suffix: so a job
  killed half-way and run again finds what the first run made, and nothing
  is ever made twice.
* ``ensure`` is idempotent: it creates what is missing, repairs what is wrong
  (a stopped ``redis-server`` is started again, on its own data), resets the
  password to the one given, and returns how to connect. Data already there is
  kept.
* ``remove`` of an instance that does not exist, or is half gone, returns
  quietly. ``names`` lists every instance the backend holds for envhub, so the
  reconciler can remove those whose environment is gone.
* Passwords are chosen by envhub (the caller) and given to ``ensure``; only a
  bucket's key pair is chosen by the store, once, by ``issue_key``.
* "Not yet" (a server still starting) raises :class:`envhub.errors.NotReady`;
  an unreachable or failing backend raises
  :class:`envhub.errors.BackingServiceUnavailable` (retryable); anything the
  backend refuses raises :class:`envhub.errors.BackingServiceError`, ``from``
  the vendor's exception. Vendor exceptions never leak.
* Every method blocks (processes, network): call it from a job or a thread.
* A backend whose instances live in the environment's namespace makes
  nothing: its ``place`` returns a :class:`Placement`, the objects the runtime
  applies with the environment's own (recorded, pruned and deleted with
  them), so it has no ``remove`` and no ``names``. Its instances are recorded
  under a backend in :data:`NAMESPACED_BACKENDS`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from envhub.domain.backing import SERVICE_NAME
from envhub.domain.catalog import Catalog, CatalogEntry, Placeholders
from envhub.domain.kube.cloudnative_pg import BackupReport, Recovery

INSTANCE_PREFIX = "envhub_e"
# A scratch database a restore check restores into, then drops (``envhub_r<restore>_<service>``).
SCRATCH_PREFIX = "envhub_r"
# The backends recorded for instances that live in the environment's namespace: a CloudNativePG
# Cluster, a Redis workload. Their objects go with the namespace's; nothing outside holds them.
CLUSTER_BACKEND = "cloudnative-pg"
WORKLOAD_BACKEND = "workload"
# The backend recorded for an instance of a catalog entry (objects in the environment's namespace).
CATALOG_BACKEND = "catalog"
NAMESPACED_BACKENDS = frozenset({CLUSTER_BACKEND, WORKLOAD_BACKEND, CATALOG_BACKEND})


class BackingKind(StrEnum):
    postgres = "postgres"
    redis = "redis"
    bucket = "bucket"


def instance_name(environment_id: int, service: str) -> str:
    """``envhub_e<environment>_<service>``: the one name of an environment's instance of a service."""
    if environment_id < 1 or not SERVICE_NAME.fullmatch(service):
        raise ValueError(f"no instance name for environment {environment_id!r} and service {service!r}")
    return f"{INSTANCE_PREFIX}{environment_id}_{service}"


def parse_instance_name(name: str) -> tuple[int, str] | None:
    """(environment id, service) of an instance name envhub made; None for anything else."""
    match = re.fullmatch(rf"{INSTANCE_PREFIX}([1-9][0-9]*)_([a-z][a-z0-9]{{0,19}})", name)
    return (int(match.group(1)), match.group(2)) if match else None


def scratch_name(restore_id: int, service: str) -> str:
    """``envhub_r<restore>_<service>``: the scratch database of one restore check."""
    if restore_id < 1 or not SERVICE_NAME.fullmatch(service):
        raise ValueError(f"no scratch name for restore {restore_id!r} and service {service!r}")
    return f"{SCRATCH_PREFIX}{restore_id}_{service}"


def parse_scratch_name(name: str) -> tuple[int, str] | None:
    """(restore id, service) of a scratch database envhub made; None for anything else."""
    match = re.fullmatch(rf"{SCRATCH_PREFIX}([1-9][0-9]*)_([a-z][a-z0-9]{{0,19}})", name)
    return (int(match.group(1)), match.group(2)) if match else None


def is_envhub_name(name: str) -> bool:
    """Whether envhub made this name (an instance or a scratch database): all an adapter may touch."""
    return parse_instance_name(name) is not None or parse_scratch_name(name) is not None


@dataclass(frozen=True, slots=True)
class Access:
    """How a workload reaches one instance. ``repr`` hides the secret.

    ``host``/``port`` are the address as a workload on the backend's network
    sees it (a cluster Service, the operator's server). ``unix_socket`` is set
    for servers envhub runs on this machine: the host path of the socket that
    the local runtime relays to from inside the sandbox, where the workload
    reaches it as 127.0.0.1 on the kind's usual port.
    """

    kind: BackingKind
    host: str
    port: int
    username: str
    password: str = field(repr=False)
    database: str = ""  # PostgreSQL: the database; bucket: the bucket's name; Redis: ""
    unix_socket: str = ""
    # The user that owns ``unix_socket`` when it is not envhub's (a server that refuses root).
    unix_socket_owner: int | None = None
    endpoint_url: str = ""  # bucket: the S3 endpoint as a workload uses it
    region: str = ""  # bucket


@dataclass(frozen=True, slots=True)
class KeyPair:
    access_key_id: str
    secret_access_key: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Dump:
    """A finished backup file: what the backup record keeps about it."""

    path: Path
    size_bytes: int
    sha256: str
    seconds: float


@dataclass(frozen=True, slots=True)
class RestoreCheck:
    """What a restored database holds, next to what its dump said it would."""

    tables: int  # tables the dump holds data for
    rows: int  # rows counted in the restored tables
    missing: tuple[str, ...] = ()  # tables of the dump the restored database lacks

    @property
    def passed(self) -> bool:
        return not self.missing


class DatabaseServer(Protocol):
    """PostgreSQL: a database and a role of the same name per instance, on one server."""

    def ensure(self, name: str, *, password: str) -> Access:
        """Role ``name`` (LOGIN, this password, no other privilege) owning database ``name``.

        Nobody else may connect to that database (CONNECT is revoked from
        PUBLIC), and the role may connect to no other envhub database.
        """

    def remove(self, name: str) -> None:
        """End the instance's connections, drop its database and its role. Quiet when gone."""

    def names(self) -> set[str]:
        """Every instance name (:func:`instance_name`) that has a database or a role on this server."""

    def dump(self, name: str, path: Path) -> Dump:
        """Write a backup of database ``name`` to ``path`` (``pg_dump`` custom format)."""

    def restore(self, name: str, path: Path) -> None:
        """Replace the contents of database ``name`` (made by :meth:`ensure` first) with the dump at ``path``.

        The restored objects belong to role ``name``. On failure the database
        may be half restored; restoring again from the same dump converges.
        """

    def check(self, name: str, path: Path) -> RestoreCheck:
        """Compare database ``name`` (just restored from ``path``) with the dump's table of contents.

        Every table the dump holds data for must exist; its rows are counted
        (exactly: run it on a scratch database, not a busy one).
        """


class CacheServers(Protocol):
    """Redis: a server (or an isolated user on one) per instance."""

    def ensure(self, name: str, *, password: str, persistent: bool = True) -> Access:
        """The instance running, answering to ``password`` only, its data kept (when ``persistent``)."""

    def remove(self, name: str) -> None:
        """Stop the instance and delete its data. Quiet when gone."""

    def names(self) -> set[str]:
        """Every instance name this backend holds."""


class BucketStore(Protocol):
    """S3-compatible storage: a bucket per instance and a key pair that can reach that bucket only."""

    def ensure(self, name: str) -> Access:
        """The bucket and what its key pair needs (a user and its policy); the returned ``Access``
        carries no key pair (``username``/``password`` empty): call :meth:`issue_key` for one."""

    def issue_key(self, name: str) -> KeyPair:
        """A new key pair for the instance's bucket; every older key pair of the instance stops working.

        Used once at creation and for rotation; a run killed after this call
        and before the caller stored the pair simply calls it again.
        """

    def remove(self, name: str) -> None:
        """Delete the bucket with every object in it, its key pairs and its user. Quiet when gone."""

    def names(self) -> set[str]:
        """Every instance name that has a bucket or a user on this store."""


@dataclass(frozen=True, slots=True)
class Placement:
    """An instance that runs in the environment's own namespace: how workloads reach it, and the
    objects that make it (plain dicts without namespace or labels; they hold its credentials)."""

    access: Access
    objects: tuple[dict[str, Any], ...] = field(repr=False)


class NamespacedDatabases(Protocol):
    """PostgreSQL that an operator runs in each environment's own namespace (CloudNativePG).

    Unlike the other backends this one makes nothing itself: :meth:`place`
    renders the objects, which the runtime applies with the environment's own.
    So an instance is pruned when its service is no longer declared and
    deleted with the environment's namespace: there is no ``remove`` and no
    orphan to find.
    """

    @property
    def backs_up(self) -> bool:
        """Whether instances are backed up (an object store is configured)."""

    @property
    def keep_days(self) -> int | None:
        """How long the operator keeps a base backup (its retention policy), in days; None without backups."""

    def available(self) -> bool:
        """Whether the operator is installed (the cluster serves its kinds): asked for each new instance.

        An unreachable cluster raises a retryable error rather than answering
        False, so an outage never sends an instance to another backend.
        """

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
        """The objects of instance ``name`` (a database and an owner of that name, with ``password``).

        Pure and repeatable: the same arguments give equal objects. ``serial``
        is the instance record's id (it tells its backups from an earlier
        instance's of the same name); ``deployment`` asks for what a deployment
        environment gets (a standby, scheduled backups). ``generation`` counts
        the restores that made the Cluster again; ``recovery`` is the data the
        current generation starts from (its database keeps the name it has there).
        """

    def reports(self) -> list[tuple[int, BackupReport]]:
        """Every backup the operator has made or is making, with its environment (one listing)."""

    def start_backup(self, environment_id: int, name: str, generation: int, backup: str) -> bool:
        """Ask the operator for a backup of instance ``name``'s Cluster of that generation now, as
        object ``backup``; False if it was asked already."""

    def start_check(
        self, environment_id: int, name: str, check: int, recovery: Recovery, *, version: str, size: str
    ) -> bool:
        """Recover ``recovery``'s backup into scratch Cluster ``check`` beside the instance's; False if
        it is there already."""

    def check_state(self, environment_id: int, name: str, check: int) -> str | None:
        """``healthy``, ``failed`` or ``running``: how the scratch Cluster fares; None when it is gone."""

    def end_check(self, environment_id: int, name: str, check: int) -> None:
        """Delete the scratch Cluster (quiet when it is gone)."""

    def generation_ready(self, environment_id: int, name: str, generation: int) -> bool | None:
        """Whether the Cluster of that generation runs, every instance up; None when there is no Cluster."""


class NamespacedCaches(Protocol):
    """Redis as a workload in each environment's own namespace (a Deployment of a pinned image).

    Like :class:`NamespacedDatabases` it makes nothing itself: :meth:`place`
    renders the objects, which the runtime applies with the environment's own,
    prunes when the service is no longer declared and deletes with the
    namespace. Always there on a cluster runtime: it needs no operator.
    """

    def place(self, service: str, *, namespace: str, password: str, persistent: bool, size: str) -> Placement:
        """The objects of ``service``'s Redis in ``namespace``, answering to ``password`` only.

        Pure and repeatable: the same arguments give equal objects. Its
        objects are named after the service (one Redis per service and
        namespace); workloads reach it at its Service in ``namespace``.
        """


class CatalogBackend(Protocol):
    """Other services from the operator's catalog (RabbitMQ and the like), in the environment's namespace.

    Like :class:`NamespacedCaches` it makes nothing itself: :meth:`render`
    gives the objects, which the runtime applies with the environment's own.
    """

    @property
    def catalog(self) -> Catalog: ...

    def render(self, entry: CatalogEntry, placeholders: Placeholders) -> list[dict[str, Any]]:
        """The entry's objects for one instance (without namespace), filled with ``placeholders``."""


class Removable(Protocol):
    def remove(self, name: str) -> None: ...

    def names(self) -> set[str]: ...


@dataclass(frozen=True, slots=True)
class Backends:
    """The backend of each kind this envhub was given (None: that kind cannot be provisioned here)."""

    postgres: DatabaseServer | None = None
    redis: CacheServers | None = None
    buckets: BucketStore | None = None
    # PostgreSQL in the environment's namespace, taken for new instances when its operator is there.
    postgres_clusters: NamespacedDatabases | None = None
    # Redis in the environment's namespace (a cluster runtime's), taken instead of ``redis``.
    redis_workloads: NamespacedCaches | None = None
    # The operator's catalog of other services (a cluster runtime's, when configured).
    catalog: CatalogBackend | None = None
    # What each backend is, for people ("embedded", "server", "s3", "workload"), by kind.
    labels: dict[str, str] = field(default_factory=dict)

    def for_kind(self, kind: str) -> Removable | None:
        backend: Removable | None = {
            "postgres": self.postgres,
            "redis": self.redis,
            "bucket": self.buckets,
        }.get(kind)
        return backend

    def label(self, kind: str) -> str:
        return self.labels.get(kind, "")
