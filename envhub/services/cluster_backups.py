"""Backups and restores of CloudNativePG clusters: the operator's, listed and driven through envhub.

A managed PostgreSQL that runs as a CloudNativePG ``Cluster`` in the
environment's namespace is backed up by its operator (barman base backups and
WAL, to the object store), not by envhub's ``pg_dump``. envhub still shows
and drives them, with the same rows, rights and audit as its own:

* **Listing.** The reconciler's pass reads every ``Backup`` object in
  environments' namespaces (one listing) and keeps a ``ServiceBackup`` row of
  method ``barman`` for each: scheduled ones (the ``ScheduledBackup`` of a
  deployment environment) and asked-for ones alike, with their state, times
  and error. The operator's report is kept in the row (``reference``), so a
  restore knows where the backup is without asking the cluster again. A row
  whose object the operator's retention removed is ``expired``.
* **Backing up now** makes a ``Backup`` object (the backup job); the operator
  does the work, and the next pass records its outcome.
* **Restoring** makes the destination's Cluster again from the backup's
  archive: the instance's ``generation`` goes up and its ``recovery`` is set,
  then the environment is redeployed. The new generation is a Cluster of its
  own name (``<cluster>-g<generation>``), which bootstraps from the archive
  as of that base backup (:mod:`envhub.domain.kube.cloudnative_pg`); the
  apply prunes the one before it, and workloads get the new address.
  The older generation's archive stays in the store: it is the copy of what
  the restore replaced. The restore is ``succeeded`` once the operator
  reports the new generation healthy, seen by the reconciler's pass.
* A new development environment restored from such a backup, or copying
  ``seed_from``'s newest one, starts its Cluster from it the same way.

What envhub cannot say of these backups: their size and a checksum (barman
keeps its own), and it does not run restore checks of them (the operator's
recovery is what proves them).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from envhub.domain.backing import parse_backing
from envhub.domain.kube.cloudnative_pg import BackupReport, Recovery, cluster_name
from envhub.domain.phases import Phase
from envhub.domain.principals import SYSTEM
from envhub.domain.specs import EnvironmentKind
from envhub.errors import EnvhubError, InvalidTransition, Unsupported
from envhub.integrations.backing.base import CLUSTER_BACKEND, NamespacedDatabases, instance_name
from envhub.models import (
    ACTIVE_RESTORE_STATES,
    BackupMethod,
    BackupState,
    BackupTrigger,
    Environment,
    InstanceState,
    JobRun,
    Project,
    RestorePurpose,
    RestoreState,
    ServiceBackup,
    ServiceInstance,
    ServiceRestore,
)
from envhub.models.base import utcnow
from envhub.services import jobruns
from envhub.services.environments import start_redeploy

log = logging.getLogger(__name__)

OPERATOR = "cloudnative-pg"
_STATES = {"completed": BackupState.succeeded, "failed": BackupState.failed}


def recovery_of(instance: ServiceInstance) -> Recovery | None:
    """The data the instance's current Cluster starts from (None: an empty database)."""
    if not instance.recovery:
        return None
    return Recovery(**json.loads(instance.recovery))


def database_in(instance: ServiceInstance) -> str:
    """The name of the database and owner inside the instance's data (a recovered one keeps its source's)."""
    recovery = recovery_of(instance)
    return recovery.database if recovery else instance_name(instance.environment_id, instance.service)


def report_of(backup: ServiceBackup) -> tuple[BackupReport, str] | None:
    """The operator's report of a barman backup, and the name of the database inside it."""
    if backup.method is not BackupMethod.barman or not backup.reference:
        return None
    stored = json.loads(backup.reference)
    database = str(stored.pop("database"))
    return BackupReport(**stored), database


def _recovery(backup: ServiceBackup) -> Recovery:
    found = report_of(backup)
    if found is None or not found[0].path:
        raise Unsupported(f"backup {backup.id} does not say where the operator keeps it")
    report, database = found
    return Recovery(database=database, server=report.server, path=report.path, backup_id=report.backup_id)


def backup_object_name(instance: ServiceInstance, backup_id: int) -> str:
    """The ``Backup`` object envhub makes for its backup row ``backup_id``."""
    name = instance_name(instance.environment_id, instance.service)
    return f"{cluster_name(name, instance.generation)}-{backup_id}"


# -- the backup job: asking the operator -----------------------------------------------------------


def start(session: Session, row: ServiceBackup, clusters: NamespacedDatabases | None) -> str:
    """Make the row's ``Backup`` object (a retry finds it there); the pass records the rest."""
    if clusters is None:
        raise Unsupported("this envhub has no CloudNativePG backend to ask for a backup")
    instance = session.get(ServiceInstance, row.instance_id)
    if instance is None or instance.state is InstanceState.removed:
        raise InvalidTransition(f"the database of backup {row.id} is gone")
    name = instance_name(instance.environment_id, instance.service)
    made = clusters.start_backup(row.environment_id, name, instance.generation, row.key)
    return "asked the operator for a backup" if made else "the operator was already asked"


# -- the reconciler's pass -------------------------------------------------------------------------


def _moment(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None
    except ValueError:
        return None


def _cluster_instances(session: Session) -> dict[tuple[int, str], ServiceInstance]:
    rows = session.exec(
        select(ServiceInstance).where(
            ServiceInstance.backend == CLUSTER_BACKEND, col(ServiceInstance.state) != InstanceState.removed
        )
    ).all()
    # Every generation's Cluster name: backups of one that a restore replaced are still the instance's.
    return {
        (row.environment_id, cluster_name(instance_name(row.environment_id, row.service), generation)): row
        for row in rows
        for generation in range(row.generation + 1)
    }


def _record(row: ServiceBackup, report: BackupReport, database: str, keep_days: int | None) -> bool:
    """Copy the report into the row (a finished backup is kept the operator's retention); True when
    anything changed."""
    state = _STATES.get(report.phase, BackupState.running)
    reference = json.dumps({**dataclasses.asdict(report), "database": database}, sort_keys=True)
    started, stopped = _moment(report.started_at), _moment(report.stopped_at)
    if (row.state, row.reference) == (state, reference):
        return False
    row.state, row.reference = state, reference
    row.started_at = started or row.started_at
    if state is not BackupState.running:
        row.finished_at = stopped or utcnow()
        if started and stopped:
            row.seconds = max(0.0, (stopped - started).total_seconds())
        if state is BackupState.succeeded and keep_days is not None:
            row.expires_at = row.finished_at + timedelta(days=keep_days)
    row.error = report.error if state is BackupState.failed else ""
    row.error_code = "backup_failed" if state is BackupState.failed else None
    return True


def observe(
    session: Session, clusters: NamespacedDatabases | None, now: datetime, *, check_every: timedelta
) -> dict[str, int]:
    """Record what the operator reports of its backups, finish restores whose Cluster is up, and run
    restore checks of deployment environments' newest base backups."""
    done = {"cluster_backups_seen": 0, "cluster_restores_done": 0, "cluster_checks_started": 0}
    if clusters is None:
        return done
    instances = _cluster_instances(session)
    if not instances:
        return done
    rows = {
        (row.instance_id, row.key): row
        for row in session.exec(
            select(ServiceBackup).where(ServiceBackup.method == BackupMethod.barman)
        ).all()
    }
    seen: set[tuple[int, str]] = set()
    for environment_id, report in clusters.reports():
        instance = instances.get((environment_id, report.cluster))
        if instance is None or instance.id is None:
            continue
        key = (instance.id, report.name)
        seen.add(key)
        row = rows.get(key)
        if row is None:
            row = ServiceBackup(
                instance_id=instance.id,
                environment_id=instance.environment_id,
                project_id=instance.project_id,
                service=instance.service,
                trigger=BackupTrigger.schedule if report.scheduled else BackupTrigger.manual,
                requested_by=OPERATOR,
                key=report.name,
                method=BackupMethod.barman,
            )
        if _record(row, report, database_in(instance), clusters.keep_days) or row.id is None:
            session.add(row)
            done["cluster_backups_seen"] += 1
    # A finished backup's object may go (with the ScheduledBackup of a generation a restore replaced)
    # while its archive stays: the row stays restorable until its retention ends (_expire in backups.py).
    live = {instance.id for instance in instances.values()}
    for key, row in rows.items():
        if key in seen or key[0] not in live:
            continue
        if row.state is BackupState.running and row.reference:
            row.state, row.finished_at = BackupState.failed, now
            row.error, row.error_code = (
                "the operator's Backup object went away before it finished",
                "backup_failed",
            )
            session.add(row)
    session.commit()
    done["cluster_restores_done"] = _finish_restores(session, clusters, instances, now)
    _finish_checks(session, clusters, now)
    done["cluster_checks_started"] = _start_checks(session, clusters, now, check_every)
    return done


def _finish_restores(
    session: Session,
    clusters: NamespacedDatabases,
    instances: dict[tuple[int, str], ServiceInstance],
    now: datetime,
) -> int:
    by_place = {(row.environment_id, row.service): row for row in instances.values()}
    running = session.exec(
        select(ServiceRestore).where(
            ServiceRestore.state == RestoreState.running, ServiceRestore.purpose != RestorePurpose.check
        )
    ).all()
    count = 0
    for restore in running:
        instance = by_place.get((restore.environment_id, restore.service))
        if instance is None:
            continue
        ready = clusters.generation_ready(
            instance.environment_id,
            instance_name(instance.environment_id, instance.service),
            instance.generation,
        )
        if not ready:
            continue
        restore.state, restore.finished_at = RestoreState.succeeded, now
        if restore.started_at is not None:
            restore.seconds = (now - restore.started_at).total_seconds()
        restore.detail = f"{restore.detail}; the operator reports the Cluster healthy"[:500]
        session.add(restore)
        count += 1
        jobruns.announce(environment_id=restore.environment_id)
    session.commit()
    return count


# -- restore checks: a scratch Cluster recovers the newest base backup ------------------------------

CHECK_DEADLINE = timedelta(hours=2)  # a scratch Cluster not healthy by then has failed its check


def _declared(session: Session, instance: ServiceInstance) -> tuple[str, str]:
    """The version and size the project declares for the instance ("" for the defaults)."""
    project = session.get(Project, instance.project_id)
    declaration = parse_backing(project.backing).service(instance.service) if project else None
    return (declaration.version, declaration.size) if declaration else ("", "")


def _start_checks(session: Session, clusters: NamespacedDatabases, now: datetime, every: timedelta) -> int:
    rows = session.exec(
        select(ServiceInstance, Environment)
        .join(Environment, col(Environment.id) == ServiceInstance.environment_id)
        .where(
            ServiceInstance.backend == CLUSTER_BACKEND,
            ServiceInstance.state == InstanceState.ready,
            Environment.kind == EnvironmentKind.deployment,
            col(Environment.phase) != Phase.deleted,
            Environment.desired_state == "present",
        )
    ).all()
    started = 0
    for instance, _environment in rows:
        recent = session.exec(
            select(ServiceRestore).where(
                ServiceRestore.environment_id == instance.environment_id,
                ServiceRestore.service == instance.service,
                ServiceRestore.purpose == RestorePurpose.check,
                col(ServiceRestore.created_at) > now - every,
            )
        ).first()
        backup = session.exec(
            select(ServiceBackup)
            .where(
                ServiceBackup.instance_id == instance.id,
                ServiceBackup.method == BackupMethod.barman,
                ServiceBackup.state == BackupState.succeeded,
            )
            .order_by(col(ServiceBackup.finished_at).desc())
            .limit(1)
        ).first()
        if recent is not None or backup is None or backup.checked_at is not None:
            continue
        row = ServiceRestore(
            backup_id=backup.id or 0,
            environment_id=instance.environment_id,
            service=instance.service,
            purpose=RestorePurpose.check,
            requested_by=SYSTEM.name,
            state=RestoreState.running,
            started_at=now,
            attempts=1,
        )
        session.add(row)
        session.commit()
        name = instance_name(instance.environment_id, instance.service)
        row.detail = f"recovering {_describe(backup)} into scratch Cluster {cluster_name(name)}-c{row.id}"
        version, size = _declared(session, instance)
        try:
            clusters.start_check(
                instance.environment_id, name, row.id or 0, _recovery(backup), version=version, size=size
            )
        except EnvhubError as exc:
            _end_check(session, row, backup, passed=False, detail=exc.message, now=now)
            continue
        session.add(row)
        session.commit()
        started += 1
    return started


def _end_check(
    session: Session, row: ServiceRestore, backup: ServiceBackup, *, passed: bool, detail: str, now: datetime
) -> None:
    backup.checked_at, backup.check_passed, backup.check_detail = now, passed, detail[:500]
    row.state = RestoreState.succeeded if passed else RestoreState.failed
    row.finished_at, row.detail = now, detail[:500]
    if row.started_at is not None:
        row.seconds = (now - row.started_at).total_seconds()
    if not passed:
        row.error, row.error_code = detail[:2000], "backup_corrupt"
    session.add_all([row, backup])
    session.commit()
    jobruns.announce(environment_id=row.environment_id)


def _finish_checks(session: Session, clusters: NamespacedDatabases, now: datetime) -> None:
    running = session.exec(
        select(ServiceRestore, ServiceBackup)
        .join(ServiceBackup, col(ServiceBackup.id) == ServiceRestore.backup_id)
        .where(
            ServiceRestore.purpose == RestorePurpose.check,
            ServiceRestore.state == RestoreState.running,
            ServiceBackup.method == BackupMethod.barman,
        )
    ).all()
    for row, backup in running:
        name = instance_name(row.environment_id, row.service)
        state = clusters.check_state(row.environment_id, name, row.id or 0)
        late = row.started_at is not None and now - row.started_at > CHECK_DEADLINE
        if state == "healthy":
            _end_check(
                session,
                row,
                backup,
                passed=True,
                detail="recovered into a scratch Cluster, which the operator reports healthy",
                now=now,
            )
        elif state == "failed" or state is None or late:
            why = {
                "failed": "the operator could not recover it into a scratch Cluster",
                None: "the scratch Cluster went away before it recovered",
            }.get(state, f"the scratch Cluster was not healthy within {CHECK_DEADLINE}")
            _end_check(session, row, backup, passed=False, detail=why, now=now)
        else:
            continue
        clusters.end_check(row.environment_id, name, row.id or 0)


# -- restores --------------------------------------------------------------------------------------


def _describe(backup: ServiceBackup) -> str:
    found = report_of(backup)
    label = found[0].backup_id if found and found[0].backup_id else backup.key
    return f"backup {backup.id} (barman {label})"


def recover(
    session: Session,
    row: ServiceRestore,
    backup: ServiceBackup,
    instance: ServiceInstance,
    destination: Environment,
) -> JobRun:
    """Make the destination's Cluster again from ``backup``: recorded in the caller's unit of work, with
    the redeploy that does it (the caller dispatches the run once that is committed)."""
    if instance.backend != CLUSTER_BACKEND:
        raise Unsupported(
            f"{_describe(backup)} is a CloudNativePG base backup; {destination.name}'s {instance.service} "
            "is not a CloudNativePG cluster",
            hint="Restore it into an environment whose database runs as a CloudNativePG cluster, "
            "or into a new environment.",
        )
    if destination.phase not in (Phase.ready, Phase.updating, Phase.failed):
        raise InvalidTransition(
            f"environment {destination.name} is {destination.phase.value}; a restore redeploys it",
            details={"phase": destination.phase.value},
        )
    recovery = _recovery(backup)
    instance.generation += 1
    instance.recovery = json.dumps(dataclasses.asdict(recovery), sort_keys=True)
    instance.updated_at = utcnow()
    session.add(instance)
    row.state, row.started_at = RestoreState.running, utcnow()
    row.detail = (
        f"Cluster made again (generation {instance.generation}) from {_describe(backup)}; "
        "the one it replaced keeps its archive in the object store"
    )[:500]
    session.add(row)
    return start_redeploy(session, destination)


def refuse_dump_into_cluster(backup: ServiceBackup, instance: ServiceInstance) -> None:
    if instance.backend == CLUSTER_BACKEND and backup.method is BackupMethod.dump:
        raise Unsupported(
            f"backup {backup.id} is a pg_dump of envhub's; {instance.service} here is a CloudNativePG "
            "cluster, which restores from its operator's base backups",
            hint="Pick one of the cluster's own backups (method barman), or restore into a new environment.",
        )


def seed_cluster(
    session: Session, instance: ServiceInstance, asked: ServiceRestore | None, seed_from: str
) -> str:
    """Before a new development environment's Cluster is first made: what it starts from (its recovery).

    ``asked`` is a restore someone asked for the new environment; otherwise the
    newest base backup of ``seed_from``'s database of the same name. Says what
    it did, for the environment's page.
    """
    backup: ServiceBackup | None = None
    if asked is not None:
        backup = session.get(ServiceBackup, asked.backup_id)
    elif seed_from:
        source = session.exec(
            select(Environment).where(
                Environment.project_id == instance.project_id,
                Environment.name == seed_from,
                col(Environment.phase) != Phase.deleted,
            )
        ).first()
        if source is not None:
            backup = session.exec(
                select(ServiceBackup)
                .where(
                    ServiceBackup.environment_id == source.id,
                    ServiceBackup.service == instance.service,
                    ServiceBackup.state == BackupState.succeeded,
                    ServiceBackup.method == BackupMethod.barman,
                )
                .order_by(col(ServiceBackup.id).desc())
                .limit(1)
            ).first()
            if backup is not None:
                asked = ServiceRestore(
                    backup_id=backup.id or 0,
                    environment_id=instance.environment_id,
                    service=instance.service,
                    purpose=RestorePurpose.seed,
                    requested_by=SYSTEM.name,
                )
    if backup is None or asked is None:
        return f"started empty: {seed_from} has no CloudNativePG backup yet" if seed_from else "started empty"
    if backup.method is not BackupMethod.barman or backup.state is not BackupState.succeeded:
        asked.state, asked.finished_at = RestoreState.failed, utcnow()
        asked.error = f"{_describe(backup)} cannot start a CloudNativePG cluster (a finished base backup can)"
        asked.error_code = "not_supported"
        session.add(asked)
        session.commit()
        return f"started empty: {asked.error}"
    recovery = _recovery(backup)
    instance.recovery = json.dumps(dataclasses.asdict(recovery), sort_keys=True)
    asked.state, asked.started_at = RestoreState.running, utcnow()
    asked.detail = f"Cluster made from {_describe(backup)}"
    session.add_all([instance, asked])
    session.commit()
    return f"recovering from {_describe(backup)}"


def operator_restore(session: Session, row: ServiceRestore) -> bool:
    """Whether the restore is a Cluster's recovery under way (no job of envhub's does it)."""
    backup = session.get(ServiceBackup, row.backup_id)
    return row.state is RestoreState.running and backup is not None and backup.method is BackupMethod.barman


def busy_restore(session: Session, environment_id: int, service: str) -> ServiceRestore | None:
    return session.exec(
        select(ServiceRestore).where(
            ServiceRestore.environment_id == environment_id,
            ServiceRestore.service == service,
            col(ServiceRestore.state).in_(ACTIVE_RESTORE_STATES),
            ServiceRestore.purpose != RestorePurpose.check,
        )
    ).first()
