"""The audit log is a hash chain: any edited, deleted or reordered row is found."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from envhub.config import PROJECT_ROOT, Settings
from envhub.domain.principals import SYSTEM, Principal
from envhub.errors import PermissionDenied
from envhub.launcher import login_link
from envhub.models import AuditChainHead, AuditEvent
from envhub.models.base import utcnow
from envhub.services.audit_chain import seal_legacy_rows, verify_chain
from envhub.services.audit_log import AuditFilter, search_events
from envhub.services.common import audit
from envhub.services.projects import create_project
from tests.support.world import World


def write(db: Engine, count: int, *, actor: Principal = SYSTEM, team_id: int | None = None) -> None:
    with Session(db) as session:
        for number in range(count):
            audit(
                session,
                actor,
                "test.event",
                target_type="thing",
                target_id=number,
                target=f"thing-{number}",
                team_id=team_id,
                details={"n": number, "nested": {"b": [1, 2.5, None], "a": "ü"}},
            )
            session.commit()


def problems(db: Engine) -> list[tuple[str, int | None]]:
    with Session(db) as session:
        return [(p.kind, p.seq) for p in verify_chain(session).problems]


def sql(db: Engine, statement: str, **params: object) -> None:
    with db.begin() as conn:
        conn.execute(text(statement), params)


def test_events_form_a_chain(settings: Settings, db: Engine) -> None:
    write(db, 5)
    with Session(db) as session:
        rows = session.exec(select(AuditEvent).order_by(col(AuditEvent.seq))).all()
        assert [row.seq for row in rows] == [1, 2, 3, 4, 5]
        assert all(row.prev_hash == before.hash for before, row in itertools.pairwise(rows))
        report = verify_chain(session)
    assert report.ok
    assert report.checked == 5


def test_a_check_reads_events_as_plain_rows_not_orm_objects(settings: Settings, db: Engine) -> None:
    # A full check reads every event: building and discarding an ORM object for each
    # took over half its time at 100,000 events (bench/scale.py).
    write(db, 5)
    loaded: list[object] = []

    def on_load(target: object, _context: object) -> None:
        loaded.append(target)

    event.listen(AuditEvent, "load", on_load)
    try:
        with Session(db) as session:
            report = verify_chain(session)
    finally:
        event.remove(AuditEvent, "load", on_load)
    assert report.ok
    assert report.checked == 5
    assert loaded == []


def test_an_edited_row_is_found(settings: Settings, db: Engine) -> None:
    write(db, 5)
    sql(db, "UPDATE audit_event SET outcome = 'failure' WHERE seq = 3")
    assert problems(db) == [("edited", 3)]


@pytest.mark.parametrize("column", ["actor", "target", "time", "details", "source_ip"])
def test_any_field_counts(settings: Settings, db: Engine, column: str) -> None:
    write(db, 3)
    value = {"time": utcnow() - timedelta(days=1), "details": '{"n": 99}'}.get(column, "someone-else")
    sql(db, f"UPDATE audit_event SET {column} = :value WHERE seq = 2", value=value)
    assert ("edited", 2) in problems(db)


def test_a_deleted_row_is_found(settings: Settings, db: Engine) -> None:
    write(db, 5)
    sql(db, "DELETE FROM audit_event WHERE seq = 3")
    found = problems(db)
    assert ("deleted", 4) in found  # reported at the first row after the gap


def test_rows_cut_off_the_end_are_found(settings: Settings, db: Engine) -> None:
    write(db, 5)
    sql(db, "DELETE FROM audit_event WHERE seq >= 4")
    assert problems(db) == [("deleted", None)]
    with Session(db) as session:
        assert "#4–#5" in verify_chain(session).problems[0].message


def test_reordered_rows_are_found(settings: Settings, db: Engine) -> None:
    write(db, 5)
    # Swap the positions of #2 and #3 (through a free value: seq is unique).
    sql(db, "UPDATE audit_event SET seq = 1000 WHERE seq = 2")
    sql(db, "UPDATE audit_event SET seq = 2 WHERE seq = 3")
    sql(db, "UPDATE audit_event SET seq = 3 WHERE seq = 1000")
    found = problems(db)
    assert ("reordered", 2) in found or ("reordered", 3) in found
    assert {seq for _, seq in found} >= {2, 3}


def test_a_rewritten_chain_without_the_key_is_found(settings: Settings, db: Engine) -> None:
    """Recomputing plain hashes does not help: the MACs need envhub's key."""
    import hashlib

    from envhub.domain.audit_chain import canonical
    from envhub.models.audit_chain import event_fields

    write(db, 3)
    with Session(db) as session:
        rows = session.exec(select(AuditEvent).order_by(col(AuditEvent.seq))).all()
        previous = rows[0].prev_hash or ""
        forged = []
        for row in rows:
            fields = event_fields(row) | ({"outcome": "failure"} if row.seq == 2 else {})
            digest = hashlib.sha256(canonical(fields, previous)).hexdigest()
            forged.append((row.seq, digest, previous))
            previous = digest
    for seq, digest, prev in forged:
        sql(
            db,
            "UPDATE audit_event SET hash = :h, prev_hash = :p, "
            "outcome = CASE WHEN seq = 2 THEN 'failure' ELSE outcome END WHERE seq = :s",
            h=digest,
            p=prev,
            s=seq,
        )
    assert {kind for kind, _ in problems(db)} >= {"edited"}


def test_the_application_cannot_change_or_delete_events(settings: Settings, db: Engine) -> None:
    write(db, 1)
    with Session(db) as session:
        event = session.exec(select(AuditEvent)).one()
        event.outcome = "failure"
        session.add(event)
        with pytest.raises(PermissionError, match="append-only"):
            session.commit()
        session.rollback()
        session.delete(session.exec(select(AuditEvent)).one())
        with pytest.raises(PermissionError, match="append-only"):
            session.commit()


@pytest.mark.parametrize("writers", [6])
def test_concurrent_appends_keep_one_unbroken_chain(settings: Settings, db: Engine, writers: int) -> None:
    errors: list[BaseException] = []

    def run(worker: int) -> None:
        try:
            write(db, 15, actor=Principal(name=f"worker-{worker}"))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    with Session(db) as session:
        seqs = session.exec(select(AuditEvent.seq).order_by(col(AuditEvent.seq))).all()
        report = verify_chain(session)
        head = session.get(AuditChainHead, 1)
    assert seqs == list(range(1, writers * 15 + 1))
    assert report.ok, report.problems
    assert head is not None
    assert head.seq == writers * 15


def test_rows_from_before_the_chain_are_sealed_once(settings: Settings, db: Engine) -> None:
    write(db, 2)
    now = utcnow()
    for number in range(3):  # as an older envhub wrote them: no place in the chain
        sql(
            db,
            "INSERT INTO audit_event "
            "(time, actor, principal_type, action, target_type, target, outcome, details) "
            "VALUES (:t, 'old', 'user', 'legacy.event', 'thing', :target, 'success', '{}')",
            t=now,
            target=f"old-{number}",
        )
    assert [kind for kind, _ in problems(db)].count("unsealed") == 3
    with Session(db) as session:
        assert seal_legacy_rows(session) == 3
        assert seal_legacy_rows(session) == 0
    assert problems(db) == []


def test_events_record_who_how_from_where_and_the_error(
    settings: Settings, world: World, session: Session, db: Engine
) -> None:
    agent_like = world.viewer.with_origin("192.0.2.10", "envhub-cli/1.0")
    with pytest.raises(PermissionDenied):
        create_project(session=session, actor=agent_like, team_id=world.acme, name="nope")
    [event] = session.exec(select(AuditEvent).where(AuditEvent.action == "project.create")).all()
    assert (
        event.actor,
        event.principal_type,
        event.action,
        event.target,
        event.outcome,
        event.error_code,
    ) == (
        "vera",
        "user",
        "project.create",
        "nope",
        "failure",
        "forbidden",
    )
    assert (event.source_ip, event.user_agent) == ("192.0.2.10", "envhub-cli/1.0")
    assert event.seq is not None
    assert event.hash is not None


def test_audit_verify_command(settings: Settings, db: Engine) -> None:
    write(db, 4)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENVHUB_")}
    env.update(
        ENVHUB_DATA_DIR=str(settings.data_dir),
        ENVHUB_DATABASE_URL=settings.database_url,
        PYTHONPATH=str(PROJECT_ROOT),
    )

    def verify(*options: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "envhub.launcher", "audit", "verify", *options],
            env=env,
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    good = verify()
    assert (good.returncode, good.stdout.strip()) == (0, "envhub: audit chain intact: 4 event(s) verified")
    # From that check's checkpoint: only the check's own event (#5) is new.
    since = verify("--incremental")
    assert (since.returncode, since.stdout.strip()) == (
        0,
        "envhub: audit chain intact: 1 event(s) after the checkpoint at #4 verified",
    )
    sql(db, "UPDATE audit_event SET actor = 'mallory' WHERE seq = 2")
    bad = verify()
    assert bad.returncode == 1
    assert "audit chain BROKEN" in bad.stdout
    assert "edited    #2" in bad.stdout


def test_search_filters_and_export_stay_inside_the_teams(
    settings: Settings, world: World, session: Session, db: Engine, local: Settings, envhub_http: str
) -> None:
    create_project(session=session, actor=world.owner, team_id=world.acme, name="shop")
    create_project(session=session, actor=world.outsider, team_id=world.globex, name="secret-plans")
    mine = search_events(session=session, actor=world.viewer)
    assert [e.target for e in mine.items] == ["shop"]
    assert search_events(session=session, actor=world.viewer, filters=AuditFilter(target="secret")).total == 0
    assert (
        search_events(session=session, actor=world.viewer, filters=AuditFilter(team_id=world.globex)).total
        == 0
    )
    assert search_events(session=session, actor=world.outsider, filters=AuditFilter(actor="oli")).total == 0
    assert search_events(session=session, actor=world.viewer, filters=AuditFilter(actor="OLI")).total == 1
    later = AuditFilter(since=utcnow() + timedelta(minutes=1))
    assert search_events(session=session, actor=world.viewer, filters=later).total == 0
    session.commit()  # end this read: on SQLite every transaction holds the write lock
    # The JSON-lines export over HTTP, as the local user (who is in neither team).
    with httpx.Client(timeout=10) as person:
        person.get(login_link(local))
        exported = person.get(f"{envhub_http}/api/v1/audit/export")
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("application/x-ndjson")
    import json

    records = [json.loads(line) for line in exported.text.splitlines()]
    assert {r["action"] for r in records} <= {"auth.sign_in", "auth.login_link"}  # only their own events
    assert all({"seq", "hash", "prev_hash", "actor", "source_ip"} <= set(r) for r in records)
