"""Backups and restores of managed PostgreSQL on the embedded default: real PostgreSQL, pg_dump and
pg_restore, the folder object store, the local runtime.

An app in an environment writes rows through DATABASE_URL; a backup is taken,
rows are deleted, a restore brings them back (after backing up what it
replaced). A stored dump that was tampered with is refused. The reconciler
backs up deployment environments on their schedule, checks each new backup in
a scratch database, and expires old ones but never a live database's newest.
A deployment environment's database is backed up before it is removed, and a
new development environment can start from a copy of staging's.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy.engine import Engine
from sqlmodel import Session

from envhub.config import Settings, override_settings
from envhub.domain.specs import EnvironmentKind
from envhub.errors import BackingServiceError, Conflict, PermissionDenied, ValidationFailed
from envhub.integrations.backing.base import instance_name, scratch_name
from envhub.jobs.backups import run_restore, take_backup
from envhub.jobs.environments import converge_environment
from envhub.models import (
    BackupState,
    BackupTrigger,
    Environment,
    JobRun,
    Project,
    RestorePurpose,
    RestoreState,
    ServiceBackup,
    ServiceRestore,
)
from envhub.models.base import utcnow
from envhub.services import backups, ports
from envhub.services.environments import create_environment, delete_environment
from envhub.services.projects import update_project
from envhub.services.reconciliation import reconcile
from tests.integration.test_managed_services import _APP, _RESP, _inside, _psql, _psql_binary, _run
from tests.support.db import audit_events, fetch_all
from tests.support.fakes import FakeQueue
from tests.support.s3_server import S3Server
from tests.support.world import World


def _declare(session: Session, world: World, project: Project, **options: object) -> Project:
    assert project.id is not None
    return update_project(
        session=session,
        actor=world.owner,
        project_id=project.id,
        changes={"backing": [{"name": "db", "kind": "postgres", **options}]},
    )


def _ready(session: Session, world: World, project: Project, queue: FakeQueue, name: str) -> int:
    assert project.id is not None
    created = create_environment(
        session=session,
        actor=world.member,
        queue=queue,
        project_id=project.id,
        name=name,
        overrides={"command": _APP.format(psql=_psql_binary()), "env": {"RESP": _RESP}},
    )
    assert created.id is not None
    assert _run(queue) == "ready"
    return created.id


def _sql(environment_id: int, statement: str) -> str:
    code, out = _inside(environment_id, _psql(statement, url='"$(cat url.out)"'))
    assert code == 0, out
    return out.strip()


def _make_deployment(db: Engine, environment_id: int) -> None:
    """Test set-up: make an environment a deployment one (releases make them for real; issue 12's tests)."""
    with Session(db) as other:
        environment = other.get(Environment, environment_id)
        assert environment is not None
        environment.kind = EnvironmentKind.deployment
        other.add(environment)
        other.commit()


def _jobs(queue: FakeQueue, function: str) -> list[int]:
    return [int(job.args[0]) for job in queue.jobs if job.function == function]  # type: ignore[call-overload]


@pytest.fixture
def with_db(session: Session, world: World, project: Project, short_settings: Settings) -> Project:
    return _declare(session, world, project)


def test_a_backup_is_taken_rows_are_deleted_and_a_restore_brings_them_back(
    session: Session, world: World, with_db: Project, db: Engine, short_settings: Settings
) -> None:
    queue = FakeQueue()
    env_id = _ready(session, world, with_db, queue, "pr-1")
    assert _sql(env_id, "select sum(x) from t") == "42"

    asked = backups.request_backup(
        session=session, actor=world.member, queue=queue, environment_id=env_id, service="db"
    )
    assert asked["state"] == "queued"
    [backup_id] = _jobs(queue, backups.BACKUP_JOB)
    assert take_backup(backup_id).endswith("s")  # "4.1 kB in 0.1 s"
    [row] = fetch_all(db, ServiceBackup)
    assert (row.state, row.trigger, row.requested_by) == (BackupState.succeeded, BackupTrigger.manual, "max")
    stored = short_settings.data_dir / "backups" / row.key
    assert stored.stat().st_size == row.size_bytes > 0
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == row.sha256
    assert row.expires_at is not None
    assert row.expires_at - utcnow() > timedelta(days=6)

    _sql(env_id, "delete from t")
    assert _sql(env_id, "select count(*) from t") == "0"
    restore = backups.restore_backup(session=session, actor=world.member, queue=queue, backup_id=backup_id)
    [restore_id] = _jobs(queue, backups.RESTORE_JOB)
    assert restore["id"] == restore_id
    assert run_restore(restore_id) == "1 table, 2 rows"
    assert _sql(env_id, "select sum(x) from t") == "42"

    # What the restore replaced (the emptied table) was backed up first, and can be restored in turn.
    [restored] = fetch_all(db, ServiceRestore)
    assert restored.state is RestoreState.succeeded
    safety = session.get(ServiceBackup, restored.safety_backup_id)
    assert safety is not None
    assert (safety.state, safety.trigger) == (BackupState.succeeded, BackupTrigger.before_restore)

    view = backups.environment_backups(session=session, actor=world.viewer, environment_id=env_id)
    assert [item["trigger"] for item in view["backups"]] == ["before_restore", "manual"]
    assert view["restores"][0]["detail"] == "1 table, 2 rows"
    [status] = view["status"]
    assert status["last_success"]
    assert not status["warning"]
    actions = [
        (event.action, event.outcome) for event in audit_events(db) if event.action.startswith("service.")
    ]
    assert ("service.backup", "success") in actions
    assert ("service.restore", "success") in actions


def test_a_tampered_backup_is_refused_and_the_database_is_left_alone(
    session: Session, world: World, with_db: Project, db: Engine, short_settings: Settings
) -> None:
    queue = FakeQueue()
    env_id = _ready(session, world, with_db, queue, "pr-1")
    backups.request_backup(
        session=session, actor=world.member, queue=queue, environment_id=env_id, service="db"
    )
    [backup_id] = _jobs(queue, backups.BACKUP_JOB)
    take_backup(backup_id)
    [row] = fetch_all(db, ServiceBackup)
    stored = short_settings.data_dir / "backups" / row.key
    data = bytearray(stored.read_bytes())
    data[-10] ^= 0xFF
    stored.write_bytes(bytes(data))
    _sql(env_id, "insert into t values (1)")

    backups.restore_backup(session=session, actor=world.member, queue=queue, backup_id=backup_id)
    [restore_id] = _jobs(queue, backups.RESTORE_JOB)
    assert run_restore(restore_id) == "failed: backup_corrupt"
    [restored] = fetch_all(db, ServiceRestore)
    assert restored.state is RestoreState.failed
    assert "does not match" in restored.error
    assert _sql(env_id, "select sum(x) from t") == "43"


def test_the_schedule_backs_up_deployment_databases_checks_them_and_expires_old_ones(
    session: Session, world: World, with_db: Project, db: Engine
) -> None:
    queue = FakeQueue()
    development = _ready(session, world, with_db, queue, "pr-1")
    production = _ready(session, world, with_db, queue, "production")
    _make_deployment(db, production)
    store = ports.backup_store()

    assert backups.drive(session=session, queue=queue, store=store)["backups_scheduled"] == 1
    [first] = _jobs(queue, backups.BACKUP_JOB)
    assert fetch_all(db, ServiceBackup)[0].environment_id == production  # development ones are not scheduled
    take_backup(first)
    # Nothing more is due; the new backup is checked in a scratch database, which is dropped after.
    driven = backups.drive(session=session, queue=queue, store=store)
    assert (driven["backups_scheduled"], driven["checks_started"]) == (0, 1)
    [check] = _jobs(queue, backups.RESTORE_JOB)
    assert run_restore(check) == "1 table, 2 rows"
    checked = session.get(ServiceBackup, first)
    session.refresh(checked)
    assert checked is not None
    assert checked.check_passed is True
    assert checked.check_detail == "1 table, 2 rows"
    assert ports.backing().postgres.names() == {  # type: ignore[union-attr]
        instance_name(development, "db"),
        instance_name(production, "db"),
    }
    assert not any(backups.drive(session=session, queue=queue, store=store).values())

    # A day later the next one is due; long after, the old one expires but the newest stays.
    later = utcnow() + timedelta(hours=25)
    assert backups.drive(session=session, queue=queue, store=store, now=later)["backups_scheduled"] == 1
    take_backup(_jobs(queue, backups.BACKUP_JOB)[-1])
    much_later = utcnow() + timedelta(days=40)
    assert backups.drive(session=session, queue=queue, store=store, now=much_later)["expired"] == 1
    states = {row.id: row.state for row in fetch_all(db, ServiceBackup)}
    assert states[first] is BackupState.expired
    assert sorted(state.value for state in states.values()) == ["expired", "queued", "succeeded"]
    assert store.size(fetch_all(db, ServiceBackup)[0].key) is None


def test_a_failed_backup_is_retried_an_hour_later_and_the_page_warns(
    session: Session, world: World, with_db: Project, db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = FakeQueue()
    production = _ready(session, world, with_db, queue, "production")
    _make_deployment(db, production)
    store = ports.backup_store()
    postgres = ports.backing().postgres

    def refuses(name: str, path: Path) -> object:
        raise BackingServiceError("pg_dump of it failed (exit 1): disk full")

    monkeypatch.setattr(postgres, "dump", refuses)
    backups.drive(session=session, queue=queue, store=store)
    assert take_backup(_jobs(queue, backups.BACKUP_JOB)[-1]) == "failed: backing_service_error"
    [status] = backups.environment_backups(session=session, actor=world.member, environment_id=production)[
        "status"
    ]
    assert status["warning"].startswith("The last backup failed")
    assert "disk full" in status["warning"]
    assert backups.drive(session=session, queue=queue, store=store)["backups_scheduled"] == 0
    later = utcnow() + timedelta(minutes=61)
    assert backups.drive(session=session, queue=queue, store=store, now=later)["backups_scheduled"] == 1


def test_a_deployment_database_is_backed_up_before_it_is_removed_and_kept(
    session: Session, world: World, with_db: Project, db: Engine
) -> None:
    queue = FakeQueue()
    staging = _ready(session, world, with_db, queue, "staging")
    _make_deployment(db, staging)
    delete_environment(
        session=session, actor=world.owner, queue=queue, environment_id=staging, confirm="staging"
    )
    assert _run(queue) == "deleted"
    [final] = fetch_all(db, ServiceBackup)
    assert (final.state, final.trigger) == (BackupState.succeeded, BackupTrigger.final)
    assert ports.backing().postgres.names() == set()  # type: ignore[union-attr]
    # Listed (and restorable) after its environment is gone; expired only after its retention.
    view = backups.environment_backups(session=session, actor=world.member, environment_id=staging)
    assert [item["trigger"] for item in view["backups"]] == ["final"]
    store = ports.backup_store()
    assert backups.drive(session=session, queue=queue, store=store)["expired"] == 0
    assert (
        backups.drive(session=session, queue=queue, store=store, now=utcnow() + timedelta(days=8))["expired"]
        == 1
    )


def test_a_deployment_database_is_restored_only_by_an_owner_who_confirms(
    session: Session, world: World, with_db: Project, db: Engine
) -> None:
    queue = FakeQueue()
    production = _ready(session, world, with_db, queue, "production")
    _make_deployment(db, production)
    backups.request_backup(
        session=session, actor=world.owner, queue=queue, environment_id=production, service="db"
    )
    [backup_id] = _jobs(queue, backups.BACKUP_JOB)
    take_backup(backup_id)
    with pytest.raises(PermissionDenied):
        backups.restore_backup(session=session, actor=world.member, queue=queue, backup_id=backup_id)
    with pytest.raises(ValidationFailed) as refused:
        backups.restore_backup(session=session, actor=world.owner, queue=queue, backup_id=backup_id)
    assert refused.value.details["expected"] == "production"
    row = backups.restore_backup(
        session=session, actor=world.owner, queue=queue, backup_id=backup_id, confirm="production"
    )
    assert row["state"] == "queued"
    failures = [
        event
        for event in audit_events(db)
        if event.action == "service.restore" and event.outcome == "failure"
    ]
    assert len(failures) == 2


def test_a_new_development_environment_starts_from_a_copy_of_stagings_database(
    session: Session, world: World, project: Project, db: Engine, short_settings: Settings
) -> None:
    queue = FakeQueue()
    declared = _declare(session, world, project)
    staging = _ready(session, world, declared, queue, "staging")
    _make_deployment(db, staging)
    _sql(staging, "insert into t values (1000)")
    backups.request_backup(
        session=session, actor=world.member, queue=queue, environment_id=staging, service="db"
    )
    take_backup(_jobs(queue, backups.BACKUP_JOB)[-1])

    declared = _declare(session, world, project, seed_from="staging")
    copy = _ready(session, world, declared, queue, "pr-7")
    # Staging's three rows, then the app's own two at its start.
    assert _sql(copy, "select sum(x) from t") == "1084"
    [seeded] = [row for row in fetch_all(db, ServiceRestore) if row.purpose is RestorePurpose.seed]
    assert seeded.state is RestoreState.succeeded
    assert seeded.detail.startswith("copy of staging's backup")
    runs = [run for run in fetch_all(db, JobRun) if run.environment_id == copy]
    assert ("seed_db", "done") in [(step["key"], step["status"]) for step in runs[-1].steps]


def test_dropping_a_deployment_database_from_the_project_takes_an_owner_who_confirms(
    session: Session, world: World, with_db: Project, db: Engine
) -> None:
    queue = FakeQueue()
    production = _ready(session, world, with_db, queue, "production")
    _make_deployment(db, production)
    assert with_db.id is not None
    with pytest.raises(PermissionDenied) as refused:
        update_project(session=session, actor=world.admin, project_id=with_db.id, changes={"backing": []})
    assert "production's db" in refused.value.message
    with pytest.raises(ValidationFailed) as unconfirmed:
        update_project(session=session, actor=world.owner, project_id=with_db.id, changes={"backing": []})
    assert unconfirmed.value.details == {"field": "confirm", "expected": "shop"}
    update_project(
        session=session, actor=world.owner, project_id=with_db.id, changes={"backing": []}, confirm="shop"
    )
    # The resync (queued on the configured queue) removes the database, after its last backup.
    resync = max(
        (run for run in fetch_all(db, JobRun) if run.environment_id == production), key=lambda r: r.id or 0
    )
    assert converge_environment(production, resync.id or 0) == "ready"
    [final] = fetch_all(db, ServiceBackup)
    assert (final.state, final.trigger) == (BackupState.succeeded, BackupTrigger.final)
    assert ports.backing().postgres.names() == set()  # type: ignore[union-attr]


def test_a_backup_restores_into_a_new_environment_in_one_action(
    session: Session, world: World, with_db: Project, db: Engine
) -> None:
    assert with_db.id is not None
    app = {"command": _APP.format(psql=_psql_binary()), "env": {"RESP": _RESP}}
    update_project(session=session, actor=world.owner, project_id=with_db.id, changes=app)  # new ones run it
    queue = FakeQueue()
    source = _ready(session, world, with_db, queue, "pr-1")
    _sql(source, "insert into t values (100)")
    backups.request_backup(
        session=session, actor=world.member, queue=queue, environment_id=source, service="db"
    )
    [backup_id] = _jobs(queue, backups.BACKUP_JOB)
    take_backup(backup_id)

    row = backups.restore_backup(
        session=session, actor=world.member, queue=queue, backup_id=backup_id, new_environment="pr-1-copy"
    )
    assert (row["purpose"], row["state"]) == ("seed", "queued")
    copy = row["environment_id"]
    assert _run(queue) == "ready"  # the new environment's first deploy restores the backup
    # The source's three rows, then the app's own two at its start.
    assert _sql(copy, "select sum(x) from t") == "184"
    restored = session.get(ServiceRestore, row["id"])
    session.refresh(restored)
    assert restored is not None
    assert restored.state is RestoreState.succeeded
    assert restored.detail == f"backup {backup_id}: 1 table, 3 rows"
    events = [(e.action, e.outcome, e.details.get("new_environment")) for e in audit_events(db)]
    assert ("service.restore", "success", True) in events
    assert ("environment.create", "success", None) in events

    with pytest.raises(Conflict):  # the name is taken: nothing is made, nothing is queued
        backups.restore_backup(
            session=session, actor=world.member, queue=queue, backup_id=backup_id, new_environment="pr-1"
        )
    assert len(fetch_all(db, ServiceRestore)) == 1


def test_the_reconciler_drops_a_dead_checks_scratch_database_but_not_a_running_ones(
    session: Session, world: World, with_db: Project, db: Engine
) -> None:
    queue = FakeQueue()
    env_id = _ready(session, world, with_db, queue, "pr-1")
    backups.request_backup(
        session=session, actor=world.member, queue=queue, environment_id=env_id, service="db"
    )
    [backup_id] = _jobs(queue, backups.BACKUP_JOB)
    take_backup(backup_id)
    running = ServiceRestore(
        backup_id=backup_id, environment_id=env_id, service="db", purpose=RestorePurpose.check
    )
    session.add(running)
    session.commit()
    postgres = ports.backing().postgres
    assert postgres is not None
    assert running.id is not None
    postgres.ensure(scratch_name(running.id, "db"), password="x" * 24)  # its check is under way
    postgres.ensure(scratch_name(running.id + 1, "db"), password="x" * 24)  # a dead worker's
    report = reconcile(session=session, queue=queue, runtime=ports.runtime(), backends=ports.backing())
    assert report.services_removed == [scratch_name(running.id + 1, "db")]
    assert scratch_name(running.id, "db") in postgres.names()


def test_backups_go_to_the_operators_object_store_when_there_is_one(
    session: Session,
    world: World,
    with_db: Project,
    db: Engine,
    short_settings: Settings,
    s3_server: S3Server,
) -> None:
    bucket = s3_server.new_bucket()
    store = s3_server.settings(bucket)
    store["object_store_secret_access_key"] = SecretStr(store["object_store_secret_access_key"])  # type: ignore[assignment]
    with override_settings(short_settings.model_copy(update=store)):
        ports.reset()
        queue = FakeQueue()
        env_id = _ready(session, world, with_db, queue, "pr-1")
        backups.request_backup(
            session=session, actor=world.member, queue=queue, environment_id=env_id, service="db"
        )
        [backup_id] = _jobs(queue, backups.BACKUP_JOB)
        take_backup(backup_id)
        [row] = fetch_all(db, ServiceBackup)
        stored = s3_server.client().get_object(Bucket=bucket, Key=row.key)["Body"].read()
        assert hashlib.sha256(stored).hexdigest() == row.sha256
        assert not (short_settings.data_dir / "backups").exists()  # nothing kept on the local disk
        _sql(env_id, "delete from t")
        backups.restore_backup(session=session, actor=world.member, queue=queue, backup_id=backup_id)
        assert run_restore(_jobs(queue, backups.RESTORE_JOB)[-1]) == "1 table, 2 rows"
        assert _sql(env_id, "select sum(x) from t") == "42"
    ports.reset()
