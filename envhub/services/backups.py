"""Backups and restores of managed PostgreSQL (issue 13): scheduled, checked, restorable from every face.

A backup is a ``pg_dump`` (custom format) of an environment's instance, kept
in the object store (``ports.backup_store()``: the operator's S3-compatible
bucket, or a folder of the data folder in the embedded default) under
``backups/<project>/<environment>/<service>/<backup>.dump``, with its size,
duration and SHA-256 recorded. The database row is the truth; jobs do the
work and the reconciler (:func:`drive`) schedules, re-drives and expires:

* every deployment environment's database is backed up every
  ``backup_every_hours`` (the declaration's; daily by default); a failed
  scheduled backup is tried again an hour later, and the page warns;
* each new backup of a deployment environment is checked: restored into a
  scratch database (``envhub_r<restore>_<service>``), its tables compared with
  the dump's table of contents, rows counted, the scratch database dropped;
* a backup is kept ``backup_keep_days``, and the newest one of a live database
  is kept until a newer one succeeds; a removed database's last backup (taken
  on removal) stays restorable for its retention;
* a restore replaces an environment's database with a backup, after a backup
  of what it replaces (``before_restore``); into a deployment environment it
  takes a team owner who confirms with the environment's name;
* a development environment may start from a copy of a deployment
  environment's latest backup (``seed_from``), made when its database is.

The stored dump is read back and its SHA-256 compared before any restore:
a backup that does not match is refused (``backup_corrupt``), never restored.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypedDict

from sqlalchemy import func, or_
from sqlmodel import Session, col, select

from envhub.config import get_settings
from envhub.domain import humanize as fmt
from envhub.domain.backing import DEFAULT_BACKUP_HOURS, DEFAULT_KEEP_DAYS, ServiceDeclaration, parse_backing
from envhub.domain.phases import Phase
from envhub.domain.policy import Action
from envhub.domain.principals import SYSTEM, Principal
from envhub.domain.specs import EnvironmentKind
from envhub.errors import (
    BackupCorrupt,
    Conflict,
    EnvhubError,
    InvalidTransition,
    NotFound,
    Unsupported,
)
from envhub.integrations.backing.base import (
    CLUSTER_BACKEND,
    Backends,
    DatabaseServer,
    NamespacedDatabases,
    RestoreCheck,
    instance_name,
    scratch_name,
)
from envhub.integrations.object_store import ObjectStore
from envhub.models import (
    ACTIVE_BACKUP_STATES,
    ACTIVE_RESTORE_STATES,
    BackupMethod,
    BackupState,
    BackupTrigger,
    Environment,
    InstanceState,
    Project,
    RestorePurpose,
    RestoreState,
    ServiceBackup,
    ServiceInstance,
    ServiceRestore,
)
from envhub.models.base import utcnow
from envhub.private_files import private_dir
from envhub.queue.base import JobQueue, QueueUnavailable
from envhub.services import cluster_backups, jobruns
from envhub.services.access import authorize_environment, owner_confirms
from envhub.services.common import AuditTarget, audit, audited
from envhub.services.environments import create_environment

log = logging.getLogger(__name__)

BACKUP_JOB = "envhub.jobs.backups.take_backup"
RESTORE_JOB = "envhub.jobs.backups.run_restore"
MAX_ATTEMPTS = 3
RETRY_FAILED_AFTER = timedelta(hours=1)  # a failed scheduled backup is tried again this much later
CHECK_EVERY = timedelta(hours=24)  # at most one restore check per database this often
REDRIVE_AFTER = timedelta(seconds=30)  # a queued row whose job the queue lost is queued again
LATE_GRACE = 1.5  # the page warns when the last success is older than this many schedule periods
PAGE = 50

_TRIGGER_LABELS = {
    BackupTrigger.schedule: "Scheduled",
    BackupTrigger.manual: "On demand",
    BackupTrigger.before_restore: "Before a restore",
    BackupTrigger.final: "Before removal",
}
_PURPOSE_LABELS = {
    RestorePurpose.restore: "Restore",
    RestorePurpose.check: "Restore check",
    RestorePurpose.seed: "Copy for a new environment",
}


# -- what people see ------------------------------------------------------------------------------


class BackupRow(TypedDict):
    id: int
    service: str
    state: str  # queued | running | succeeded | failed | expired
    trigger: str  # schedule | manual | before_restore | final
    trigger_label: str
    method: str  # pg_dump (envhub's, in the object store) | barman (a CloudNativePG operator's)
    requested_by: str
    created_at: str  # ISO 8601
    created: str  # "3 h ago"
    finished_at: str
    size_bytes: int
    size: str  # "13.0 MB"
    seconds: float
    duration: str
    sha256: str
    expires_at: str
    expires: str  # "kept until 2026-12-14 09:00:00 UTC"
    check: str  # "passed: 12 tables, 3,400 rows", "failed: ...", "" before one ran
    check_passed: bool | None
    error: str
    error_code: str
    restorable: bool


class BackupStatus(TypedDict):
    service: str
    scheduled: bool  # deployment environments are backed up on a schedule
    schedule: str  # "every 24 h, kept 7 days"
    last_success: str  # "3 h ago"; "" before the first
    last_success_at: str
    last_size: str
    warning: str  # the last one failed, or it is late; "" when all is well


class RestoreRow(TypedDict):
    id: int
    backup_id: int
    environment_id: int  # where it goes
    service: str
    purpose: str  # restore | check | seed
    purpose_label: str
    state: str  # queued | running | succeeded | failed
    requested_by: str
    created: str
    created_at: str
    seconds: float
    detail: str
    error: str
    error_code: str
    safety_backup_id: int | None


class BackupsView(TypedDict):
    status: list[BackupStatus]
    backups: list[BackupRow]
    restores: list[RestoreRow]
    next_before: int | None  # ask again with before=this for older backups


def _iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment else ""


def _check_label(row: ServiceBackup) -> str:
    if row.check_passed is None:
        return ""
    return f"{'passed' if row.check_passed else 'failed'}: {row.check_detail}"


def backup_row(row: ServiceBackup) -> BackupRow:
    # barman keeps a base backup's size to itself; its duration is the operator's report.
    measured = row.state is BackupState.succeeded and row.method is BackupMethod.dump
    return BackupRow(
        id=row.id or 0,
        service=row.service,
        state=row.state.value,
        trigger=row.trigger.value,
        trigger_label=_TRIGGER_LABELS[row.trigger],
        method=row.method.value,
        requested_by=row.requested_by,
        created_at=_iso(row.created_at),
        created=fmt.ago(row.created_at),
        finished_at=_iso(row.finished_at),
        size_bytes=row.size_bytes,
        size=fmt.size(row.size_bytes) if measured else "",
        seconds=round(row.seconds, 3),
        duration=fmt.duration(row.seconds) if row.state is BackupState.succeeded else "",
        sha256=row.sha256,
        expires_at=_iso(row.expires_at),
        expires=f"kept until {fmt.stamp(row.expires_at)}" if row.expires_at else "",
        check=_check_label(row),
        check_passed=row.check_passed,
        error=row.error,
        error_code=row.error_code or "",
        restorable=row.state is BackupState.succeeded,
    )


def restore_row(row: ServiceRestore) -> RestoreRow:
    return RestoreRow(
        id=row.id or 0,
        backup_id=row.backup_id,
        environment_id=row.environment_id,
        service=row.service,
        purpose=row.purpose.value,
        purpose_label=_PURPOSE_LABELS[row.purpose],
        state=row.state.value,
        requested_by=row.requested_by,
        created=fmt.ago(row.created_at),
        created_at=_iso(row.created_at),
        seconds=round(row.seconds, 3),
        detail=row.detail,
        error=row.error,
        error_code=row.error_code or "",
        safety_backup_id=row.safety_backup_id,
    )


def _postgres_services(project: Project) -> list[ServiceDeclaration]:
    return [service for service in parse_backing(project.backing).services if service.kind == "postgres"]


def _declaration(project: Project | None, service: str) -> ServiceDeclaration | None:
    found = parse_backing(project.backing).service(service) if project is not None else None
    return found if found is not None and found.kind == "postgres" else None


def _status(
    session: Session, environment: Environment, declaration: ServiceDeclaration, now: datetime
) -> BackupStatus:
    scheduled = environment.kind is EnvironmentKind.deployment
    environment_id = environment.id or 0
    latest = _newest(session, environment_id, declaration.name, BackupState.succeeded, BackupState.failed)
    success = _newest(session, environment_id, declaration.name, BackupState.succeeded)
    warning = ""
    if latest is not None and latest.state is BackupState.failed:
        warning = f"The last backup failed {fmt.ago(latest.finished_at or latest.created_at)}: {latest.error}"
    elif scheduled:
        allowed = timedelta(hours=declaration.backup_every_hours * LATE_GRACE)
        since = success.finished_at if success is not None else None
        if since is not None and now - since > allowed:
            warning = (
                f"The last backup is {fmt.ago(since, at=now).removesuffix(' ago')} old; "
                f"one is due every {declaration.backup_every_hours} h"
            )
    return BackupStatus(
        service=declaration.name,
        scheduled=scheduled,
        schedule=(
            f"every {declaration.backup_every_hours} h, kept {declaration.backup_keep_days} days"
            if scheduled
            else f"on demand, kept {declaration.backup_keep_days} days"
        ),
        last_success=fmt.ago(success.finished_at, at=now) if success and success.finished_at else "",
        last_success_at=_iso(success.finished_at) if success else "",
        last_size=fmt.size(success.size_bytes) if success and success.method is BackupMethod.dump else "",
        warning=warning,
    )


def _newest(
    session: Session, environment_id: int, service: str, *states: BackupState
) -> ServiceBackup | None:
    """The environment's newest backup of ``service`` in one of ``states``."""
    return session.exec(
        select(ServiceBackup)
        .where(
            ServiceBackup.environment_id == environment_id,
            ServiceBackup.service == service,
            col(ServiceBackup.state).in_(states),
        )
        .order_by(col(ServiceBackup.id).desc())
        .limit(1)
    ).first()


def _readable_environment(
    session: Session, actor: Principal, environment_id: int
) -> tuple[Environment, Project]:
    """The environment (deleted ones too: their backups stay restorable) and its project."""
    environment = session.get(Environment, environment_id)
    if environment is None:
        raise NotFound("environment was not found", details={"environment_id": environment_id})
    project = authorize_environment(session, actor, environment, Action.environment_read, what="environment")
    return environment, project


def environment_backups(
    *,
    session: Session,
    actor: Principal,
    environment_id: int,
    service: str | None = None,
    before: int | None = None,
    limit: int = PAGE,
) -> BackupsView:
    """The environment's backups (newest first, ``limit`` per page), its restores, and per database
    when the last backup succeeded and whether something needs attention."""
    environment, project = _readable_environment(session, actor, environment_id)
    limit = max(1, min(limit, 200))
    now = utcnow()
    declarations = [item for item in _postgres_services(project) if service in (None, item.name)]
    query = select(ServiceBackup).where(ServiceBackup.environment_id == environment_id)
    if service is not None:
        query = query.where(ServiceBackup.service == service)
    if before is not None:
        query = query.where(col(ServiceBackup.id) < before)
    rows = list(session.exec(query.order_by(col(ServiceBackup.id).desc()).limit(limit + 1)))
    restores = session.exec(
        select(ServiceRestore)
        .where(ServiceRestore.environment_id == environment_id)
        .order_by(col(ServiceRestore.id).desc())
        .limit(20)
    )
    return BackupsView(
        status=[_status(session, environment, declaration, now) for declaration in declarations],
        backups=[backup_row(row) for row in rows[:limit]],
        restores=[restore_row(row) for row in restores],
        next_before=rows[limit - 1].id if len(rows) > limit else None,
    )


# -- asking for a backup or a restore ----------------------------------------------------------------


def _live_instance(session: Session, environment: Environment, service: str) -> ServiceInstance:
    row = session.exec(
        select(ServiceInstance).where(
            ServiceInstance.environment_id == environment.id, ServiceInstance.service == service
        )
    ).first()
    if row is None or row.kind != "postgres" or row.state is InstanceState.removed:
        raise NotFound(
            f"environment {environment.name} has no PostgreSQL service named {service!r}",
            hint="Backups are of managed PostgreSQL databases; list the environment's services to see them.",
        )
    if row.state is not InstanceState.ready:
        raise InvalidTransition(
            f"the database {service} of {environment.name} is {row.state.value}, not ready",
            details={"state": row.state.value},
        )
    return row


def request_backup(
    *, session: Session, actor: Principal, queue: JobQueue, environment_id: int, service: str
) -> BackupRow:
    """Back the database up now. Asking while one is under way returns that one."""
    target = AuditTarget("environment", id=environment_id, details={"service": service})
    with audited(session, actor, "service.backup", target):
        environment, project = _readable_environment(session, actor, environment_id)
        target.name, target.team_id = f"{project.name}/{environment.name}", project.team_id
        authorize_environment(session, actor, environment, Action.environment_redeploy, what="environment")
        if environment.phase is Phase.deleted or environment.desired_state != "present":
            raise InvalidTransition(f"environment {environment.name} is being deleted")
        instance = _live_instance(session, environment, service)
        running = session.exec(
            select(ServiceBackup).where(
                ServiceBackup.instance_id == instance.id, col(ServiceBackup.state).in_(ACTIVE_BACKUP_STATES)
            )
        ).first()
        if running is not None:
            target.record = False
            return backup_row(running)
        row = _new_backup(session, instance, BackupTrigger.manual, requested_by=actor.name)
        target.details["backup"] = row.id
    _enqueue_backup(queue, row)
    jobruns.announce(environment_id=environment_id)
    return backup_row(row)


def restore_backup(
    *,
    session: Session,
    actor: Principal,
    queue: JobQueue,
    backup_id: int,
    environment_id: int | None = None,
    service: str | None = None,
    confirm: str | None = None,
    new_environment: str | None = None,
) -> RestoreRow:
    """Replace a database with a backup: its own environment's, or another environment's of the project,
    or a new development environment's (``new_environment``: its name), made with the backup's data.

    What the database held is backed up first. A deployment environment's
    database takes a team owner who confirms with the environment's name.
    """
    if new_environment is not None:
        return _restore_into_new(
            session=session,
            actor=actor,
            queue=queue,
            backup_id=backup_id,
            name=new_environment,
            service=service,
        )
    target = AuditTarget("environment", id=environment_id, details={"backup": backup_id})
    with audited(session, actor, "service.restore", target):
        backup = session.get(ServiceBackup, backup_id)
        if backup is None:
            raise NotFound("backup was not found", details={"backup_id": backup_id})
        source, project = _readable_environment(session, actor, backup.environment_id)
        destination = (
            source if environment_id in (None, source.id) else session.get(Environment, environment_id)
        )
        if destination is None or destination.project_id != source.project_id:
            raise NotFound(
                "environment was not found in the backup's project",
                hint="A backup restores into an environment of its own project.",
                details={"environment_id": environment_id},
            )
        into = service or backup.service
        target.id, target.name, target.team_id = (
            destination.id,
            f"{project.name}/{destination.name}",
            project.team_id,
        )
        target.details.update({"service": into, "from_environment": source.id})
        authorize_environment(session, actor, destination, Action.environment_redeploy, what="environment")
        if destination.kind is EnvironmentKind.deployment:
            _owner_confirms(session, actor, destination, project, confirm)
        if backup.state is not BackupState.succeeded:
            raise InvalidTransition(
                f"backup {backup_id} is {backup.state.value}; only a finished backup can be restored",
                details={"state": backup.state.value},
            )
        if destination.phase is Phase.deleted or destination.desired_state != "present":
            raise InvalidTransition(f"environment {destination.name} is being deleted")
        instance = _live_instance(session, destination, into)
        cluster_backups.refuse_dump_into_cluster(backup, instance)
        busy = cluster_backups.busy_restore(session, destination.id or 0, into)
        if busy is not None:
            raise Conflict(
                f"a restore into {destination.name}'s {into} is already under way (restore {busy.id})",
                details={"restore_id": busy.id},
            )
        row = ServiceRestore(
            backup_id=backup_id,
            environment_id=destination.id or 0,
            service=instance.service,
            purpose=RestorePurpose.restore,
            requested_by=actor.name,
        )
        session.add(row)
        session.flush()
        target.details["restore"] = row.id
        run = None
        if backup.method is BackupMethod.barman:  # the Cluster is made again by a redeploy
            run = cluster_backups.recover(session, row, backup, instance, destination)
            target.details["job_run"] = run.id
    if run is not None:
        jobruns.dispatch(session, queue, run)
    else:
        _enqueue_restore(queue, row)
    jobruns.announce(environment_id=destination.id)
    return restore_row(row)


def _restore_into_new(
    *, session: Session, actor: Principal, queue: JobQueue, backup_id: int, name: str, service: str | None
) -> RestoreRow:
    """A new development environment whose database starts as the backup (its job restores it)."""
    target = AuditTarget("environment", name=name, details={"backup": backup_id})
    with audited(session, actor, "service.restore", target):
        backup = session.get(ServiceBackup, backup_id)
        if backup is None:
            raise NotFound("backup was not found", details={"backup_id": backup_id})
        source, project = _readable_environment(session, actor, backup.environment_id)
        target.team_id, target.details["from_environment"] = project.team_id, source.id
        if backup.state is not BackupState.succeeded:
            raise InvalidTransition(
                f"backup {backup_id} is {backup.state.value}; only a finished backup can be restored",
                details={"state": backup.state.value},
            )
        into = service or backup.service
        if _declaration(project, into) is None:
            raise NotFound(
                f"{project.name} declares no PostgreSQL service named {into!r} for a new environment to get",
                details={"service": into},
            )
        target.record = False  # the success is recorded with the environment, in its transaction
    made: list[ServiceRestore] = []

    def with_restore(inner: Session, environment: Environment) -> None:
        row = ServiceRestore(
            backup_id=backup_id,
            environment_id=environment.id or 0,
            service=into,
            purpose=RestorePurpose.seed,
            requested_by=actor.name,
        )
        inner.add(row)
        inner.flush()
        audit(
            inner,
            actor,
            "service.restore",
            target_type="environment",
            target_id=environment.id,
            target=f"{project.name}/{environment.name}",
            team_id=project.team_id,
            details={"backup": backup_id, "service": into, "restore": row.id, "new_environment": True},
        )
        made.append(row)

    create_environment(
        session=session, actor=actor, queue=queue, project_id=project.id or 0, name=name, also=with_restore
    )
    [row] = made
    return restore_row(row)


def requested_seed(session: Session, environment_id: int, service: str) -> ServiceRestore | None:
    """A restore asked for a new environment's database, still waiting for the database to be made."""
    return session.exec(
        select(ServiceRestore).where(
            ServiceRestore.environment_id == environment_id,
            ServiceRestore.service == service,
            ServiceRestore.purpose == RestorePurpose.seed,
            ServiceRestore.state == RestoreState.queued,
        )
    ).first()


def checks_under_way(session: Session) -> set[str]:
    """The scratch databases restore checks that have not finished may be using."""
    return {
        scratch_name(restore_id, service)
        for restore_id, service in session.execute(
            select(ServiceRestore.id, ServiceRestore.service).where(
                ServiceRestore.purpose == RestorePurpose.check,
                col(ServiceRestore.state).in_(ACTIVE_RESTORE_STATES),
            )
        ).all()
        if restore_id is not None
    }


def _owner_confirms(
    session: Session, actor: Principal, environment: Environment, project: Project, confirm: str | None
) -> None:
    owner_confirms(
        session,
        actor,
        project.team_id,
        action="service.restore",
        confirm=confirm,
        expected=environment.name,
        forbidden=f"{environment.name} is a deployment environment; "
        "only a team owner may replace its database",
        unconfirmed=f"restoring replaces {environment.name}'s database (a backup of it is taken first); "
        "confirm with its name",
        hint=f"Send confirm={environment.name!r} to restore.",
    )


def _new_backup(
    session: Session, instance: ServiceInstance, trigger: BackupTrigger, *, requested_by: str
) -> ServiceBackup:
    row = ServiceBackup(
        instance_id=instance.id or 0,
        environment_id=instance.environment_id,
        project_id=instance.project_id,
        service=instance.service,
        trigger=trigger,
        requested_by=requested_by,
    )
    session.add(row)
    session.flush()
    if instance.backend == CLUSTER_BACKEND:  # the operator's base backup, asked for by a Backup object
        row.method, row.key = BackupMethod.barman, cluster_backups.backup_object_name(instance, row.id or 0)
    else:
        row.key = f"backups/{instance.project_id}/{instance.environment_id}/{instance.service}/{row.id}.dump"
    session.add(row)
    return row


def _job_id(kind: str, row_id: int | None, attempts: int) -> str:
    return f"envhub-{kind}-{row_id}-{attempts}"


def _enqueue_backup(queue: JobQueue, row: ServiceBackup) -> None:
    try:
        queue.enqueue(BACKUP_JOB, row.id, job_id=_job_id("backup", row.id, row.attempts))
    except QueueUnavailable as exc:  # recorded: the reconciler queues it again
        log.warning("backup %s not queued yet: %s", row.id, exc)


def _enqueue_restore(queue: JobQueue, row: ServiceRestore) -> None:
    try:
        queue.enqueue(RESTORE_JOB, row.id, job_id=_job_id("restore", row.id, row.attempts))
    except QueueUnavailable as exc:
        log.warning("restore %s not queued yet: %s", row.id, exc)


# -- the work (jobs) ------------------------------------------------------------------------------


def _workdir() -> Path:
    return private_dir(get_settings().data_dir / "run" / "backups")


def _database(backends: Backends) -> DatabaseServer:
    if backends.postgres is None:
        raise Unsupported(
            "this envhub has no PostgreSQL backend to back up or restore",
            hint="Ask the operator to configure one (ENVHUB_SERVICES_POSTGRES_URL).",
        )
    return backends.postgres


def _keep_days(session: Session, row: ServiceBackup) -> int:
    declaration = _declaration(session.get(Project, row.project_id), row.service)
    return declaration.backup_keep_days if declaration else DEFAULT_KEEP_DAYS


def _dump_and_store(session: Session, row: ServiceBackup, backends: Backends, store: ObjectStore) -> None:
    """Dump the instance, upload it, record what was stored (the row is committed ``succeeded``)."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=_workdir()) as folder:
        dump = _database(backends).dump(instance_name(row.environment_id, row.service), Path(folder) / "dump")
        stored = store.upload(row.key, dump.path)
    if stored != dump.size_bytes:
        raise BackupCorrupt(f"the store kept {stored} bytes of backup {row.id}'s {dump.size_bytes}")
    now = utcnow()
    row.state, row.size_bytes, row.sha256 = BackupState.succeeded, dump.size_bytes, dump.sha256
    row.seconds, row.finished_at, row.error, row.error_code = time.monotonic() - started, now, "", None
    row.expires_at = now + timedelta(days=_keep_days(session, row))
    session.add(row)
    session.commit()


def _claim(session: Session, row: ServiceBackup | ServiceRestore) -> bool:
    if row.state not in (BackupState.queued, BackupState.running, RestoreState.queued, RestoreState.running):
        return False
    row.state = BackupState.running if isinstance(row, ServiceBackup) else RestoreState.running
    row.attempts += 1
    row.started_at = row.heartbeat_at = utcnow()
    session.add(row)
    session.commit()
    jobruns.announce(environment_id=row.environment_id)  # open pages show it running, not still queued
    return True


def _fail(session: Session, row: ServiceBackup | ServiceRestore, exc: EnvhubError) -> None:
    """Record a failure; a retryable one is queued again (the reconciler re-drives it), a few times."""
    session.rollback()
    again = exc.retryable and row.attempts < MAX_ATTEMPTS
    if isinstance(row, ServiceBackup):
        row.state = BackupState.queued if again else BackupState.failed
    else:
        row.state = RestoreState.queued if again else RestoreState.failed
    row.error, row.error_code = exc.message[:2000], exc.code
    row.finished_at = None if again else utcnow()
    session.add(row)
    session.commit()


def perform_backup(session: Session, backup_id: int, *, backends: Backends, store: ObjectStore) -> str:
    """The backup job: dump, upload, record. Safe to run twice (a finished one is not done again)."""
    row = session.get(ServiceBackup, backup_id)
    if row is None or not _claim(session, row):
        return "nothing to do"
    try:
        if row.method is BackupMethod.barman:  # the operator takes it; the reconciler records how it went
            return cluster_backups.start(session, row, backends.postgres_clusters)
        _dump_and_store(session, row, backends, store)
    except EnvhubError as exc:
        _fail(session, row, exc)
        log.warning("backup %s failed: %s", backup_id, exc.message)
        return f"failed: {exc.code}"
    finally:
        jobruns.announce(environment_id=row.environment_id)
    return f"{fmt.size(row.size_bytes)} in {fmt.duration(row.seconds)}"


def fetch_verified(store: ObjectStore, backup: ServiceBackup, path: Path) -> None:
    """Download the backup to ``path`` and prove it is the one that was taken (size and SHA-256)."""
    digest, size = hashlib.sha256(), 0
    with path.open("wb") as out:
        for chunk in store.read(backup.key):
            out.write(chunk)
            digest.update(chunk)
            size += len(chunk)
    if size != backup.size_bytes or digest.hexdigest() != backup.sha256:
        raise BackupCorrupt(
            f"backup {backup.id} in the store ({fmt.size(size)}) does not match what was taken "
            f"({fmt.size(backup.size_bytes)}, SHA-256 {backup.sha256[:12]})"
        )


def perform_restore(session: Session, restore_id: int, *, backends: Backends, store: ObjectStore) -> str:
    """The restore job: a restore into an environment, or a restore check into a scratch database."""
    row = session.get(ServiceRestore, restore_id)
    if row is None or not _claim(session, row):
        return "nothing to do"
    backup = session.get(ServiceBackup, row.backup_id)
    started = time.monotonic()
    try:
        if backup is None or backup.state is not BackupState.succeeded:
            raise InvalidTransition(f"backup {row.backup_id} is no longer available")
        database = _database(backends)
        with tempfile.TemporaryDirectory(dir=_workdir()) as folder:
            path = Path(folder) / "dump"
            fetch_verified(store, backup, path)
            if row.purpose is RestorePurpose.check:
                detail, passed = _check(database, row, path)
                backup.checked_at, backup.check_passed, backup.check_detail = utcnow(), passed, detail
                session.add(backup)
                session.commit()
                if not passed:
                    row.detail = detail
                    raise BackupCorrupt(f"backup {backup.id} did not restore cleanly: {detail}")
            else:
                detail = _replace(session, row, database, path, backends, store)
        row.state, row.detail, row.error, row.error_code = RestoreState.succeeded, detail, "", None
        row.seconds, row.finished_at = time.monotonic() - started, utcnow()
        session.add(row)
        session.commit()
    except EnvhubError as exc:
        row.seconds = time.monotonic() - started
        _fail(session, row, exc)
        log.warning("restore %s failed: %s", restore_id, exc.message)
        return f"failed: {exc.code}"
    finally:
        jobruns.announce(environment_id=row.environment_id)
    return detail


def _counted(found: RestoreCheck) -> str:
    """ "12 tables, 3,400 rows", "1 table, 1 row": what a restore brought back."""
    tables = f"{found.tables} table{'' if found.tables == 1 else 's'}"
    return f"{tables}, {found.rows:,} row{'' if found.rows == 1 else 's'}"


def _check(database: DatabaseServer, row: ServiceRestore, path: Path) -> tuple[str, bool]:
    scratch = scratch_name(row.id or 0, row.service)
    try:
        database.ensure(scratch, password=secrets.token_urlsafe(24))
        database.restore(scratch, path)
        found = database.check(scratch, path)
    finally:
        database.remove(scratch)
    if found.missing:
        return (
            f"{len(found.missing)} of {found.tables} tables missing ({', '.join(found.missing[:5])})",
            False,
        )
    return _counted(found), True


def _replace(
    session: Session,
    row: ServiceRestore,
    database: DatabaseServer,
    path: Path,
    backends: Backends,
    store: ObjectStore,
) -> str:
    instance = session.exec(
        select(ServiceInstance).where(
            ServiceInstance.environment_id == row.environment_id, ServiceInstance.service == row.service
        )
    ).first()
    if instance is None or instance.state is not InstanceState.ready:
        raise InvalidTransition(f"the database {row.service} is not ready to restore into")
    if row.purpose is RestorePurpose.restore and row.safety_backup_id is None:
        safety = _new_backup(session, instance, BackupTrigger.before_restore, requested_by=row.requested_by)
        row.safety_backup_id = safety.id
        session.add(row)
        session.commit()
        _claim(session, safety)
        try:
            _dump_and_store(session, safety, backends, store)
        except EnvhubError as exc:
            _fail(session, safety, exc)
            raise
    name = instance_name(row.environment_id, row.service)
    database.restore(name, path)
    found = database.check(name, path)
    if found.missing:
        raise BackupCorrupt(
            f"the restore left {len(found.missing)} tables missing: {', '.join(found.missing[:5])}"
        )
    return _counted(found)


def seed(
    session: Session,
    instance: ServiceInstance,
    declaration: ServiceDeclaration,
    *,
    backends: Backends,
    store: ObjectStore,
) -> str:
    """Fill a new development environment's database: from the backup a restore asked for it, or from
    the latest backup of ``seed_from``.

    Called by the environment job once, right after the database is made;
    says what it did. A source without a backup leaves the database empty
    (and says so); a failing restore fails the deployment, to be retried.
    """
    asked = requested_seed(session, instance.environment_id, instance.service)
    if asked is not None:
        return _seed_from(session, instance, asked, backends=backends, store=store)
    source = session.exec(
        select(Environment).where(
            Environment.project_id == instance.project_id,
            Environment.name == declaration.seed_from,
            col(Environment.phase) != Phase.deleted,
        )
    ).first()
    backup = None
    if source is not None:
        backup = _newest(session, source.id or 0, declaration.name, BackupState.succeeded)
    if source is None or backup is None:
        return f"started empty: {declaration.seed_from} has no backup of {declaration.name} yet"
    row = ServiceRestore(
        backup_id=backup.id or 0,
        environment_id=instance.environment_id,
        service=instance.service,
        purpose=RestorePurpose.seed,
        requested_by=SYSTEM.name,
    )
    session.add(row)
    session.commit()
    return _seed_from(
        session, instance, row, backends=backends, store=store, what=f"copy of {declaration.seed_from}'s "
    )


def _seed_from(
    session: Session,
    instance: ServiceInstance,
    row: ServiceRestore,
    *,
    backends: Backends,
    store: ObjectStore,
    what: str = "",
) -> str:
    """Restore ``row``'s backup into the new instance (the environment's job does, once)."""
    backup = session.get(ServiceBackup, row.backup_id)
    row.state, row.attempts, row.started_at = RestoreState.running, row.attempts + 1, utcnow()
    session.add(row)
    session.commit()
    started = time.monotonic()
    try:
        if backup is None or backup.state is not BackupState.succeeded:
            raise InvalidTransition(f"backup {row.backup_id} is no longer available")
        with tempfile.TemporaryDirectory(dir=_workdir()) as folder:
            path = Path(folder) / "dump"
            fetch_verified(store, backup, path)
            database = _database(backends)
            name = instance_name(instance.environment_id, instance.service)
            database.restore(name, path)
            found = database.check(name, path)
    except EnvhubError as exc:
        row.seconds = time.monotonic() - started
        row.attempts = MAX_ATTEMPTS  # the environment's job retries, not the reconciler
        _fail(session, row, exc)
        raise
    row.state, row.seconds, row.finished_at = RestoreState.succeeded, time.monotonic() - started, utcnow()
    row.detail = f"{what}backup {backup.id}: {_counted(found)}"
    session.add(row)
    session.commit()
    return row.detail


def final_backup(
    session: Session, instance: ServiceInstance, *, backends: Backends, store: ObjectStore
) -> None:
    """Back a deployment environment's database up before it is removed; raises if that fails,
    so the database is never dropped without a backup (kept for its retention)."""
    row = _new_backup(session, instance, BackupTrigger.final, requested_by=SYSTEM.name)
    session.commit()
    _claim(session, row)
    try:
        _dump_and_store(session, row, backends, store)
    except EnvhubError as exc:
        row.attempts = MAX_ATTEMPTS
        _fail(session, row, exc)
        raise


# -- the reconciler's pass ------------------------------------------------------------------------


def drive(
    *,
    session: Session,
    queue: JobQueue,
    store: ObjectStore,
    clusters: NamespacedDatabases | None = None,
    now: datetime | None = None,
) -> dict[str, int]:
    """Schedule due backups and restore checks, queue again what the queue lost, expire old backups;
    record what the CloudNativePG operator reports of its backups and of restored Clusters."""
    now = now or utcnow()
    done = {"backups_scheduled": 0, "checks_started": 0, "redriven": 0, "expired": 0}
    done.update(cluster_backups.observe(session, clusters, now, check_every=CHECK_EVERY))
    done["backups_scheduled"] = _schedule_backups(session, queue, now)
    done["checks_started"] = _schedule_checks(session, queue, now)
    done["redriven"] = _redrive(session, queue, now)
    done["expired"] = _expire(session, store, now)
    return done


def _deployment_instances(session: Session) -> list[tuple[ServiceInstance, Environment]]:
    """Ready PostgreSQL instances of live deployment environments: what the schedule covers."""
    return list(
        session.exec(
            select(ServiceInstance, Environment)
            .join(Environment, col(Environment.id) == ServiceInstance.environment_id)
            .where(
                ServiceInstance.kind == "postgres",
                ServiceInstance.state == InstanceState.ready,
                ServiceInstance.backend != CLUSTER_BACKEND,  # the operator backs those up itself
                Environment.kind == EnvironmentKind.deployment,
                col(Environment.phase) != Phase.deleted,
                Environment.desired_state == "present",
            )
        ).all()
    )


def _latest_by_instance(session: Session, *states: BackupState) -> dict[int, datetime]:
    return dict(
        session.execute(
            select(ServiceBackup.instance_id, func.max(ServiceBackup.created_at))
            .where(col(ServiceBackup.state).in_(states))
            .group_by(col(ServiceBackup.instance_id))
        ).all()
    )


def _schedule_backups(session: Session, queue: JobQueue, now: datetime) -> int:
    instances = _deployment_instances(session)
    if not instances:
        return 0
    live = _latest_by_instance(session, BackupState.succeeded, BackupState.queued, BackupState.running)
    failed = _latest_by_instance(session, BackupState.failed)
    projects: dict[int, Project | None] = {}
    made: list[ServiceBackup] = []
    for instance, _environment in instances:
        if instance.project_id not in projects:
            projects[instance.project_id] = session.get(Project, instance.project_id)
        declaration = _declaration(projects[instance.project_id], instance.service)
        every = timedelta(hours=declaration.backup_every_hours if declaration else DEFAULT_BACKUP_HOURS)
        last = live.get(instance.id or 0)
        if last is not None and now - last < every:
            continue
        last_failure = failed.get(instance.id or 0)
        if (
            last_failure is not None
            and (last is None or last_failure > last)
            and now - last_failure < RETRY_FAILED_AFTER
        ):
            continue
        row = _new_backup(session, instance, BackupTrigger.schedule, requested_by=SYSTEM.name)
        audit(
            session,
            SYSTEM,
            "service.backup",
            target_type="environment",
            target_id=instance.environment_id,
            target=f"environment {instance.environment_id}",
            team_id=None,
            details={"service": instance.service, "backup": row.id, "trigger": "schedule"},
        )
        made.append(row)
    session.commit()
    for row in made:
        _enqueue_backup(queue, row)
    return len(made)


def _schedule_checks(session: Session, queue: JobQueue, now: datetime) -> int:
    instances = {instance.id: instance for instance, _ in _deployment_instances(session)}
    if not instances:
        return 0
    recent = {
        (environment_id, service)
        for environment_id, service in session.execute(
            select(ServiceRestore.environment_id, ServiceRestore.service).where(
                ServiceRestore.purpose == RestorePurpose.check,
                col(ServiceRestore.created_at) > now - CHECK_EVERY,
            )
        ).all()
    }
    newest = dict(
        session.execute(
            select(ServiceBackup.instance_id, func.max(ServiceBackup.id))
            .where(
                ServiceBackup.state == BackupState.succeeded, col(ServiceBackup.instance_id).in_(instances)
            )
            .group_by(col(ServiceBackup.instance_id))
        ).all()
    )
    made: list[ServiceRestore] = []
    for instance_id, backup_id in newest.items():
        instance = instances[instance_id]
        backup = session.get(ServiceBackup, backup_id)
        if (
            backup is None
            or backup.checked_at is not None
            or (instance.environment_id, instance.service) in recent
        ):
            continue
        row = ServiceRestore(
            backup_id=backup_id,
            environment_id=instance.environment_id,
            service=instance.service,
            purpose=RestorePurpose.check,
            requested_by=SYSTEM.name,
        )
        session.add(row)
        made.append(row)
    session.commit()
    for row in made:
        _enqueue_restore(queue, row)
    return len(made)


def _redrive(session: Session, queue: JobQueue, now: datetime) -> int:
    """Queue again the backups and restores whose job the queue no longer has (lost, or retried)."""
    count = 0
    stale = now - REDRIVE_AFTER
    backups = session.exec(
        select(ServiceBackup).where(
            col(ServiceBackup.state).in_(ACTIVE_BACKUP_STATES),
            col(ServiceBackup.created_at) < stale,
            # A running barman backup is the operator's to finish: the pass records its outcome.
            or_(
                col(ServiceBackup.method) == BackupMethod.dump, col(ServiceBackup.state) == BackupState.queued
            ),
        )
    ).all()
    restores = session.exec(
        select(ServiceRestore).where(
            col(ServiceRestore.state).in_(ACTIVE_RESTORE_STATES),
            col(ServiceRestore.created_at) < stale,
            ServiceRestore.purpose != RestorePurpose.seed,  # the environment's own job does those
        )
    ).all()
    rows: list[ServiceBackup | ServiceRestore] = [*backups, *restores]
    for row in rows:
        if isinstance(row, ServiceRestore) and cluster_backups.operator_restore(session, row):
            continue  # the operator's recovery: the pass finishes it when the Cluster is up
        kind = "backup" if isinstance(row, ServiceBackup) else "restore"
        if queue.is_pending(_job_id(kind, row.id, row.attempts)) or queue.is_pending(
            _job_id(kind, row.id, max(0, row.attempts - 1))
        ):
            continue
        if row.attempts >= MAX_ATTEMPTS:
            _give_up(session, row)
            continue
        if isinstance(row, ServiceBackup):
            row.state = BackupState.queued
            session.add(row)
            session.commit()
            _enqueue_backup(queue, row)
        else:
            row.state = RestoreState.queued
            session.add(row)
            session.commit()
            _enqueue_restore(queue, row)
        count += 1
    return count


def _give_up(session: Session, row: ServiceBackup | ServiceRestore) -> None:
    message = f"gave up after {row.attempts} attempts" + (f": {row.error}" if row.error else "")
    row.state = BackupState.failed if isinstance(row, ServiceBackup) else RestoreState.failed
    row.error, row.error_code = message[:2000], row.error_code or "backing_service_unavailable"
    row.finished_at = utcnow()
    session.add(row)
    session.commit()


def _expire(session: Session, store: ObjectStore, now: datetime) -> int:
    """Delete stored dumps past their retention, except the newest of a database that still exists."""
    due = session.exec(
        select(ServiceBackup).where(
            ServiceBackup.state == BackupState.succeeded,
            col(ServiceBackup.expires_at).is_not(None),
            col(ServiceBackup.expires_at) < now,
        )
    ).all()
    if not due:
        return 0
    newest = dict(
        session.execute(
            select(ServiceBackup.instance_id, func.max(ServiceBackup.id))
            .join(ServiceInstance, col(ServiceInstance.id) == ServiceBackup.instance_id)
            .where(
                ServiceBackup.state == BackupState.succeeded, ServiceInstance.state != InstanceState.removed
            )
            .group_by(col(ServiceBackup.instance_id))
        ).all()
    )
    count = 0
    for row in due:
        if newest.get(row.instance_id) == row.id and row.method is BackupMethod.dump:
            continue  # the only way back for a live database until a newer backup succeeds
        if row.method is BackupMethod.barman:  # the operator's retention removed it from its archive
            row.state = BackupState.expired
            session.add(row)
            session.commit()
            count += 1
            continue
        try:
            store.delete(row.key)
        except EnvhubError as exc:
            log.warning("could not delete expired backup %s: %s", row.id, exc.message)
            continue
        row.state = BackupState.expired
        session.add(row)
        session.commit()
        count += 1
    return count
