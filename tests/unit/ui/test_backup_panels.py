"""The environment page's Backups sections as the loader builds them (ui/views.read_backups), on the test DB.

One section per declared PostgreSQL (none for Redis), each paging its own
backups with the use case's ``next_before``, flagging a backup or restore
under way (what disables the buttons), and listing only its own restores.
The backup rows are written directly: what they hold is the backup jobs'
business (tests/integration/test_backups.py runs them for real).
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlmodel import Session

from envhub.domain import credentials
from envhub.domain.credentials import SecretKind
from envhub.models import (
    BackupState,
    BackupTrigger,
    InstanceState,
    Project,
    RestorePurpose,
    RestoreState,
    ServiceBackup,
    ServiceInstance,
    ServiceRestore,
    WebSession,
)
from envhub.models.base import utcnow
from envhub.services.environments import create_environment
from envhub.services.projects import update_project
from envhub.ui import views
from tests.support.fakes import FakeQueue
from tests.support.world import World


def _signed_in(session: Session, world: World) -> str:
    """A browser session of the team's viewer; the loader is given its digest, as the page is."""
    issued = credentials.issue(SecretKind.session)
    session.add(
        WebSession(
            token_hash=issued.digest,
            user_id=world.viewer.user_id or 0,
            method="local",
            expires_at=utcnow() + timedelta(hours=1),
        )
    )
    session.commit()
    return issued.digest


def _environment(session: Session, world: World, project: Project) -> int:
    update_project(
        session=session,
        actor=world.owner,
        project_id=project.id or 0,
        changes={
            "backing": [
                {"name": "db", "kind": "postgres"},
                {"name": "events", "kind": "postgres", "prefix": "EVENTS_", "backup_keep_days": 3},
                {"name": "cache", "kind": "redis"},
            ]
        },
    )
    created = create_environment(
        session=session, actor=world.member, queue=FakeQueue(), project_id=project.id or 0, name="pr-1"
    )
    return created.id or 0


def _backups(session: Session, environment_id: int, project_id: int, service: str, count: int) -> list[int]:
    instance = ServiceInstance(
        environment_id=environment_id,
        project_id=project_id,
        service=service,
        kind="postgres",
        backend="embedded",
        state=InstanceState.ready,
    )
    session.add(instance)
    session.flush()
    made = []
    for number in range(count):
        row = ServiceBackup(
            instance_id=instance.id or 0,
            environment_id=environment_id,
            project_id=project_id,
            service=service,
            trigger=BackupTrigger.manual,
            requested_by="max",
            state=BackupState.succeeded,
            size_bytes=1000 + number,
            sha256=secrets.token_hex(32),
            seconds=0.5,
            finished_at=utcnow(),
            expires_at=utcnow() + timedelta(days=7),
        )
        session.add(row)
        session.flush()
        made.append(row.id or 0)
    session.commit()
    return made


def test_each_database_pages_its_own_backups_and_says_what_is_under_way(
    session: Session, world: World, project: Project
) -> None:
    who = _signed_in(session, world)
    environment_id = _environment(session, world, project)
    db = _backups(session, environment_id, project.id or 0, "db", views.BACKUPS_PAGE_SIZE + 2)
    running = ServiceBackup(
        instance_id=session.get(ServiceBackup, db[0]).instance_id,  # type: ignore[union-attr]
        environment_id=environment_id,
        project_id=project.id or 0,
        service="db",
        trigger=BackupTrigger.manual,
        state=BackupState.running,
    )
    session.add(running)
    session.add(
        ServiceRestore(
            backup_id=db[3],
            environment_id=environment_id,
            service="db",
            purpose=RestorePurpose.restore,
            requested_by="max",
            state=RestoreState.succeeded,
            detail="1 table, 2 rows",
        )
    )
    session.commit()

    panels = views.read_backups(who, environment_id=environment_id, before={})
    assert sorted(panels) == ["db", "events"]  # the Redis has no backups
    first = panels["db"]
    assert len(first["rows"]) == views.BACKUPS_PAGE_SIZE
    assert first["rows"][0]["state"] == "running"  # newest first
    assert (first["active"], first["restoring"]) == (True, False)
    assert (first["empty"], first["paged"]) == (False, False)
    assert first["older"] == first["rows"][-1]["id"]
    assert [row["detail"] for row in first["restores"]] == ["1 table, 2 rows"]
    assert first["status"]["last_size"] == "1.0 kB"

    older = views.read_backups(who, environment_id=environment_id, before={"db": first["older"]})["db"]
    assert [row["id"] for row in older["rows"]] == db[2::-1]  # the three oldest
    assert (older["older"], older["paged"], older["active"]) == (0, True, True)

    events = panels["events"]
    assert (events["rows"], events["restores"], events["empty"], events["active"]) == ([], [], True, False)
    assert events["status"]["schedule"] == "on demand, kept 3 days"
    assert events["status"]["last_success"] == ""


def test_a_restore_under_way_is_flagged_and_an_unreadable_environment_has_no_sections(
    session: Session, world: World, project: Project
) -> None:
    who = _signed_in(session, world)
    environment_id = _environment(session, world, project)
    [backup] = _backups(session, environment_id, project.id or 0, "events", 1)
    session.add(
        ServiceRestore(
            backup_id=backup,
            environment_id=environment_id,
            service="events",
            purpose=RestorePurpose.restore,
            requested_by="max",
            state=RestoreState.queued,
        )
    )
    session.commit()
    panels = views.read_backups(who, environment_id=environment_id, before={})
    assert (panels["events"]["restoring"], panels["db"]["restoring"]) == (True, False)
    assert panels["db"]["restores"] == []
    assert views.read_backups(who, environment_id=environment_id + 1000, before={}) == {}
