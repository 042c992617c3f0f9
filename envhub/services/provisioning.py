"""The job side of managed services: make each environment's instances, give their variables, remove them.

Called by the environment job just before the runtime applies (so the
variables reach the workloads with the project's secrets) and after it tears
down. The database is the source of truth: the instance row and its sealed
credential are committed *before* the backend is asked, so a worker killed at
any point finds the same name and the same password on its next attempt, and
the backend's idempotent ``ensure`` finishes the job without making anything
twice. Credentials are generated here, sealed at rest, and never written into
an audit record or a message.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from envhub.domain.backing import (
    CATALOG,
    BackingSettings,
    Connection,
    ServiceDeclaration,
    brought_by_workloads,
    parse_backing,
    variables_for,
)
from envhub.domain.catalog import Placeholders, resolve_parameters
from envhub.domain.catalog import variables as catalog_variables
from envhub.domain.kube import namespace_for
from envhub.domain.kube.guards import check_object
from envhub.domain.kube.manifests import parse_manifests
from envhub.domain.principals import SYSTEM
from envhub.domain.specs import EnvironmentKind, EnvironmentTarget, ServiceSocket
from envhub.errors import EnvhubError, Unsupported, ValidationFailed
from envhub.integrations.backing.base import (
    CATALOG_BACKEND,
    CLUSTER_BACKEND,
    NAMESPACED_BACKENDS,
    WORKLOAD_BACKEND,
    Access,
    Backends,
    BucketStore,
    KeyPair,
    Placement,
    instance_name,
)
from envhub.integrations.object_store import ObjectStore
from envhub.models import Environment, InstanceState, Project, ServiceInstance
from envhub.models.base import utcnow
from envhub.runtime.base import ProgressReporter
from envhub.services import backups, cluster_backups
from envhub.services.common import audit
from envhub.services.crypto import cipher

log = logging.getLogger(__name__)

STEP = "services"
STEP_TITLE = "Managed services"
REMOVE_STEP = "remove_services"
REMOVE_STEP_TITLE = "Remove managed services"


@dataclass(frozen=True, slots=True)
class Grant:
    """What the environment receives for its managed services: variables, sockets to relay locally,
    and the objects of services that run in its own namespace (the runtime applies them)."""

    variables: dict[str, str] = field(default_factory=dict, repr=False)
    sockets: tuple[ServiceSocket, ...] = ()
    objects: tuple[dict[str, Any], ...] = field(default=(), repr=False)


def declared(project: Project) -> BackingSettings:
    """The project's services; a stored declaration that no longer validates is an error to show."""
    return parse_backing(project.backing)


def _purpose(environment_id: int, service: str) -> str:
    return f"service:{environment_id}:{service}"


def _instance(
    session: Session, project: Project, environment_id: int, service: ServiceDeclaration, *, seeded: bool
) -> ServiceInstance:
    """The row of this environment's instance, made (and committed) on first sight."""
    query = select(ServiceInstance).where(
        ServiceInstance.environment_id == environment_id, ServiceInstance.service == service.name
    )
    row = session.exec(query).first()
    if row is not None:
        if row.kind != service.kind:  # the project re-declared the name as another kind
            raise ValidationFailed(
                f"service {service.name} was a {row.kind} in this environment and is now a {service.kind}",
                hint="Give the new service another name; the old instance is removed when its name goes.",
            )
        return row
    row = ServiceInstance(
        environment_id=environment_id,
        project_id=project.id or 0,
        service=service.name,
        kind=service.kind,
        seed_detail=(
            "pending"
            if (service.seed_from and seeded) or backups.requested_seed(session, environment_id, service.name)
            else ""
        ),
    )
    session.add(row)
    try:
        session.commit()
    except IntegrityError:  # another run of the same environment made it first
        session.rollback()
        row = session.exec(query).one()
    return row


def _password(session: Session, row: ServiceInstance) -> str:
    """The instance's password, generated and committed before any backend sees it."""
    purpose = _purpose(row.environment_id, row.service)
    if row.credential:
        return cipher().open(row.credential, purpose=purpose)
    password = secrets.token_urlsafe(24)
    row.credential, row.credential_set_at = cipher().seal(password, purpose=purpose), utcnow()
    session.add(row)
    session.commit()
    return password


def _key_pair(session: Session, row: ServiceInstance, store: BucketStore) -> KeyPair:
    """A bucket's key pair: the stored one, or one the store issues now (then stored at once)."""
    purpose = _purpose(row.environment_id, row.service)
    if row.credential:
        stored = json.loads(cipher().open(row.credential, purpose=purpose))
        return KeyPair(stored["access_key_id"], stored["secret_access_key"])
    pair = store.issue_key(instance_name(row.environment_id, row.service))
    plain = json.dumps({"access_key_id": pair.access_key_id, "secret_access_key": pair.secret_access_key})
    row.credential, row.credential_set_at = cipher().seal(plain, purpose=purpose), utcnow()
    session.add(row)
    session.commit()
    return pair


def _in_namespace(session: Session, row: ServiceInstance, backends: Backends) -> bool:
    """Whether a PostgreSQL instance is (or, new, becomes) a cluster in the environment's namespace.

    Decided once, when the instance is first made, and recorded before any
    backend is asked: an operator installed later never moves an instance off
    the server its data is on, and one uninstalled stops the apply (which
    would otherwise prune the Cluster and its data) with an error instead.
    """
    clusters = backends.postgres_clusters
    if row.backend == CLUSTER_BACKEND:
        if clusters is None or not clusters.available():
            raise Unsupported(
                f"service {row.service} is a CloudNativePG cluster in the environment's namespace, "
                "and this cluster no longer serves that operator's kinds",
                hint="Install the CloudNativePG operator again (the data is still in the namespace), "
                "or remove the service from the project to delete it.",
            )
        return True
    if row.backend:
        return False
    chosen = clusters is not None and clusters.available()
    if not chosen and backends.postgres is None:
        raise _unavailable("PostgreSQL", "ENVHUB_SERVICES_POSTGRES_URL, or the CloudNativePG operator")
    row.backend = CLUSTER_BACKEND if chosen else backends.label("postgres")
    session.add(row)
    session.commit()
    return chosen


def _workload(session: Session, row: ServiceInstance, backends: Backends) -> bool:
    """Whether a Redis instance is a workload in the environment's namespace (a cluster runtime's).

    Recorded before its objects are rendered, as a cluster's is: a removal
    then leaves it to the runtime's pruning, whatever state it was left in.
    """
    if backends.redis_workloads is None:
        return False
    if row.backend != WORKLOAD_BACKEND:
        row.backend = WORKLOAD_BACKEND
        session.add(row)
        session.commit()
    return True


def _ensure(
    session: Session,
    row: ServiceInstance,
    declaration: ServiceDeclaration,
    backends: Backends,
    *,
    deployment: bool,
    namespace: str,
) -> Placement:
    """How to reach the instance, made or repaired; for an instance in the environment's namespace
    (``namespace``), with the objects the runtime is to apply for it."""
    name = instance_name(row.environment_id, row.service)
    if declaration.kind == "postgres":
        if _in_namespace(session, row, backends):
            clusters = backends.postgres_clusters
            assert clusters is not None
            assert row.id is not None
            if row.seed_detail == "pending":  # a Cluster starts from a backup when it is first made, or never
                asked = backups.requested_seed(session, row.environment_id, row.service)
                row.seed_detail = cluster_backups.seed_cluster(session, row, asked, declaration.seed_from)
                session.add(row)
                session.commit()
            return clusters.place(
                name,
                serial=row.id,
                password=_password(session, row),
                version=declaration.version,
                size=declaration.size,
                deployment=deployment,
                generation=row.generation,
                recovery=cluster_backups.recovery_of(row),
            )
        if backends.postgres is None:
            raise _unavailable("PostgreSQL", "ENVHUB_SERVICES_POSTGRES_URL")
        return Placement(backends.postgres.ensure(name, password=_password(session, row)), ())
    if declaration.kind == "redis":
        if _workload(session, row, backends):
            assert backends.redis_workloads is not None
            # The password is committed before the runtime applies anything: a killed job comes back to it.
            return backends.redis_workloads.place(
                declaration.name,
                namespace=namespace,
                password=_password(session, row),
                persistent=declaration.persistent,
                size=declaration.size,
            )
        if backends.redis is None:
            raise _unavailable("Redis", "ENVHUB_SERVICES_EMBEDDED on the local runtime")
        access = backends.redis.ensure(
            name, password=_password(session, row), persistent=declaration.persistent
        )
        return Placement(access, ())
    if backends.buckets is None:
        raise _unavailable("buckets", "ENVHUB_SERVICES_S3_URL")
    access = backends.buckets.ensure(name)
    pair = _key_pair(session, row, backends.buckets)
    return Placement(
        dataclasses.replace(access, username=pair.access_key_id, password=pair.secret_access_key), ()
    )


def _place_entry(
    session: Session,
    row: ServiceInstance,
    declaration: ServiceDeclaration,
    backends: Backends,
    namespace: str,
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """A catalog service's objects for this environment (guarded like its own manifests) and its variables."""
    if backends.catalog is None:
        raise _unavailable("catalog services", "ENVHUB_SERVICES_CATALOG, on a cluster runtime")
    entry = backends.catalog.catalog.get(declaration.entry)
    if entry is None:
        raise ValidationFailed(
            f"the catalog has no entry {declaration.entry!r}",
            hint="Ask the operator which entries the catalog offers (ENVHUB_SERVICES_CATALOG).",
            details={"service": declaration.name, "entry": declaration.entry},
        )
    if row.backend != CATALOG_BACKEND:  # recorded first: pruning, not a backend, removes it
        row.backend = CATALOG_BACKEND
        session.add(row)
        session.commit()
    placeholders = Placeholders(
        instance=f"envhub-{declaration.name}",
        namespace=namespace,
        password=_password(session, row),
        parameters=resolve_parameters(entry, declaration.parameters),
    )
    objects = backends.catalog.render(entry, placeholders)
    for obj in objects:
        check_object(obj, namespace=namespace)
    names = declaration.variable_names(entry.variables)
    filled = catalog_variables(entry, placeholders)
    return objects, {names[canonical]: value for canonical, value in filled.items()}


def _unavailable(what: str, setting: str) -> Unsupported:
    return Unsupported(
        f"this envhub has no backend for {what}",
        hint=f"Ask the operator to configure one ({setting}), or remove the service from the project.",
    )


def _connection(access: Access) -> Connection:
    return Connection(
        kind=access.kind.value,
        host=access.host,
        port=access.port,
        username=access.username,
        password=access.password,
        database=access.database,
        endpoint_url=access.endpoint_url,
        region=access.region,
    )


def _settle(
    session: Session, row: ServiceInstance, state: InstanceState, reason: str = "", code: str | None = None
) -> None:
    row.state, row.reason, row.error_code, row.updated_at = state, reason[:1000], code, utcnow()
    if state is not InstanceState.removed:
        row.removed_at = None
    session.add(row)
    session.commit()


def provision(
    session: Session,
    target: EnvironmentTarget,
    *,
    project: Project,
    backends: Backends,
    progress: ProgressReporter,
    store: ObjectStore | None = None,
) -> Grant:
    """Make (or repair) every instance the project declares for this environment; their variables and sockets.

    A service the environment's own workloads bring is skipped, saying why; an
    instance of a service the project no longer declares is removed.
    """
    settings = declared(project)
    rows = _live_rows(session, target.id)
    gone = [row for row in rows if row.service not in settings.names()]
    if not settings.services and not gone:
        return Grant()
    progress.begin(STEP, ", ".join(settings.names()))
    environment = session.get(Environment, target.id)
    deployment = environment is not None and environment.kind is EnvironmentKind.deployment
    _remove_rows(session, gone, backends, store=store if deployment else None)
    manifests = parse_manifests(target.spec.manifests) if target.spec.manifests else []
    brought = brought_by_workloads(spec=target.spec, objects=manifests, project_env=project.env)
    namespace = namespace_for(target)  # where a cluster runtime puts it (and a Redis workload's address)
    variables: dict[str, str] = {}
    sockets: list[ServiceSocket] = []
    objects: dict[tuple[str, str, str], dict[str, Any]] = {}
    made: list[str] = []
    for declaration in settings.services:
        row = _instance(session, project, target.id, declaration, seeded=not deployment)
        if declaration.kind in brought:
            _settle(session, row, InstanceState.skipped, f"not provisioned: {brought[declaration.kind]}")
            continue
        if declaration.kind == CATALOG:
            try:
                entry_objects, entry_variables = _place_entry(session, row, declaration, backends, namespace)
                _collect(objects, entry_objects)
            except EnvhubError as exc:
                _settle(session, row, InstanceState.failed, f"{declaration.name}: {exc.message}", exc.code)
                raise
            _settle(
                session,
                row,
                InstanceState.ready,
                f"{len(entry_objects)} objects of catalog entry {declaration.entry}",
            )
            variables.update(entry_variables)
            made.append(f"{declaration.name} ({declaration.entry})")
            continue
        try:
            placement = _ensure(
                session, row, declaration, backends, deployment=deployment, namespace=namespace
            )
            _collect(objects, placement.objects)
            if row.seed_detail == "pending":
                _seed(session, row, declaration, backends=backends, store=store, progress=progress)
        except EnvhubError as exc:
            _settle(session, row, InstanceState.failed, f"{declaration.name}: {exc.message}", exc.code)
            raise
        access = placement.access
        if access.unix_socket:  # relayed locally: two of a kind get the kind's port and the next ones
            access = _free_port(access, taken={socket.port for socket in sockets})
        if row.backend not in NAMESPACED_BACKENDS:
            row.backend = backends.label(declaration.kind)
        _settle(session, row, InstanceState.ready, _note(row, backends, deployment=deployment))
        variables.update(variables_for(declaration, _connection(access)))
        if access.unix_socket:
            sockets.append(
                ServiceSocket(
                    declaration.name, access.port, access.unix_socket, owner=access.unix_socket_owner
                )
            )
        made.append(f"{declaration.name} ({declaration.kind})")
    skipped = [f"{name} skipped" for name in settings.names() if name not in {m.split(" ")[0] for m in made}]
    progress.finish(STEP, ", ".join(made + skipped))
    return Grant(variables=variables, sockets=tuple(sockets), objects=tuple(objects.values()))


def _free_port(access: Access, *, taken: set[int]) -> Access:
    """``access`` on the first port from its own that no other relayed service of the environment uses
    (in declaration order, so every deploy gives each service the same port)."""
    port = access.port
    while port in taken:
        port += 1
    if port == access.port:
        return access
    endpoint = access.endpoint_url.replace(f":{access.port}", f":{port}") if access.endpoint_url else ""
    return dataclasses.replace(access, port=port, endpoint_url=endpoint)


def _collect(into: dict[tuple[str, str, str], dict[str, Any]], objects: Sequence[dict[str, Any]]) -> None:
    """Add one instance's objects; instances may share one (the store's keys), never differ on it."""
    for obj in objects:
        key = (str(obj["apiVersion"]), str(obj["kind"]), str(obj["metadata"]["name"]))
        if into.setdefault(key, obj) != obj:
            raise ValidationFailed(f"two managed services render {key[1]} {key[2]} differently")


def _note(row: ServiceInstance, backends: Backends, *, deployment: bool) -> str:
    """What a person should know about a ready instance (said on the environment's page)."""
    clusters = backends.postgres_clusters
    if row.backend != CLUSTER_BACKEND or clusters is None:
        return ""
    if not clusters.backs_up:
        return "CloudNativePG cluster without backups: envhub has no object store (ENVHUB_OBJECT_STORE_*)"
    return "CloudNativePG cluster with scheduled backups" if deployment else "CloudNativePG cluster"


def _seed(
    session: Session,
    row: ServiceInstance,
    declaration: ServiceDeclaration,
    *,
    backends: Backends,
    store: ObjectStore | None,
    progress: ProgressReporter,
) -> None:
    """Copy ``seed_from``'s latest backup into a new development database, once (shown as its own step)."""
    step = f"seed_{row.service}"
    source = f"{declaration.seed_from}'s {declaration.name} database" if declaration.seed_from else "a backup"
    progress.begin(step, f"Fill {declaration.name} from {source}")
    if row.backend == CLUSTER_BACKEND:  # its data is the operator's, bootstrapped in the namespace
        row.seed_detail = "started empty: a CloudNativePG cluster is not filled from envhub's backups"
        session.add(row)
        session.commit()
        progress.finish(step, row.seed_detail)
        return
    if store is None:
        raise Unsupported("this envhub has no store of backups to copy a database from")
    row.seed_detail = backups.seed(session, row, declaration, backends=backends, store=store)
    session.add(row)
    session.commit()
    progress.finish(step, row.seed_detail)


def _live_rows(session: Session, environment_id: int) -> list[ServiceInstance]:
    return list(
        session.exec(
            select(ServiceInstance).where(
                ServiceInstance.environment_id == environment_id,
                col(ServiceInstance.state) != InstanceState.removed,
            )
        )
    )


def _remove_rows(
    session: Session, rows: Sequence[ServiceInstance], backends: Backends, *, store: ObjectStore | None
) -> None:
    """Remove instances with their data; with ``store`` (a deployment environment's), a database is
    backed up first and is not dropped unless that backup succeeded."""
    for row in rows:
        # An instance in the namespace goes with the next apply's pruning, or with the namespace.
        if row.state is not InstanceState.skipped and row.backend not in NAMESPACED_BACKENDS:
            backend = backends.for_kind(row.kind)
            if backend is None:
                raise _unavailable(row.kind, "the backend this instance was made on")
            if store is not None and row.kind == "postgres" and row.state is InstanceState.ready:
                backups.final_backup(session, row, backends=backends, store=store)
            backend.remove(instance_name(row.environment_id, row.service))
        row.credential, row.removed_at = "", utcnow()
        _settle(session, row, InstanceState.removed)


def release(
    session: Session,
    environment_id: int,
    *,
    backends: Backends,
    progress: ProgressReporter,
    store: ObjectStore | None = None,
) -> None:
    """Remove every instance of a deleted environment, with its data and credentials. Quiet when none.

    A deployment environment's databases are backed up first (with ``store``),
    and that last backup is kept for its retention.
    """
    rows = _live_rows(session, environment_id)
    if not rows:
        return
    progress.begin(REMOVE_STEP, ", ".join(row.service for row in rows))
    environment = session.get(Environment, environment_id)
    deployment = environment is not None and environment.kind is EnvironmentKind.deployment
    _remove_rows(session, rows, backends, store=store if deployment else None)
    progress.finish(REMOVE_STEP, f"{len(rows)} removed")


def remove_orphans(session: Session, backends: Backends) -> list[str]:
    """Remove instances a backend holds that no live instance row wants (the reconciler's pass).

    A row is committed before its backend is asked, so an instance without a
    live row is one whose environment is gone (or a removal that died half-way);
    a restore check's scratch database without a check under way is one whose
    worker died.
    A kind nobody ever declared is not looked at: listing would start an
    embedded server for nothing.
    """
    removed: list[str] = []
    for kind in ("postgres", "redis", "bucket"):
        backend = backends.for_kind(kind)
        used = session.exec(select(ServiceInstance.id).where(ServiceInstance.kind == kind).limit(1)).first()
        if backend is None or used is None:
            continue
        # Listed before the rows are read: an instance made after this belongs to a row committed before it.
        held = backend.names()
        live = {
            instance_name(row.environment_id, row.service)
            for row in session.exec(
                select(ServiceInstance).where(
                    ServiceInstance.kind == kind, col(ServiceInstance.state) != InstanceState.removed
                )
            )
        }
        if kind == "postgres":  # the scratch databases of restore checks under way
            live |= backups.checks_under_way(session)
        for name in sorted(held - live):
            try:
                backend.remove(name)
            except EnvhubError as exc:
                log.warning("could not remove the orphaned %s instance %s: %s", kind, name, exc.message)
                continue
            audit(
                session,
                SYSTEM,
                "service.orphan_removed",
                target_type="service",
                target_id=None,
                target=name,
                team_id=None,
                details={"kind": kind},
            )
            session.commit()
            removed.append(name)
    return removed
