"""One context manager records a use case's audit event, success or failure, once (services/common.py)."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from envhub.errors import Conflict
from envhub.models import Team
from envhub.services.common import AuditTarget, audited
from tests.support.db import audit_events, fetch_all
from tests.support.world import World


def test_success_is_recorded_once_with_the_changes(session: Session, db: Engine, world: World) -> None:
    target = AuditTarget("team", name="pending")
    with audited(session, world.owner, "test.create", target):
        team = Team(name="made-here")
        session.add(team)
        session.flush()
        target.id, target.name, target.details = team.id, team.name, {"why": "a test"}
    [event] = audit_events(db, "test.create")
    assert (event.outcome, event.target_id, event.target, event.details) == (
        "success",
        team.id,
        "made-here",
        {"why": "a test"},
    )
    assert "made-here" in {row.name for row in fetch_all(db, Team)}, "committed with its event"


def test_a_failure_rolls_the_changes_back_and_records_the_code(
    session: Session, db: Engine, world: World
) -> None:
    def create_a_taken_team() -> None:
        with audited(session, world.owner, "test.create", AuditTarget("team", name="doomed")):
            session.add(Team(name="never-kept"))
            session.flush()
            raise Conflict("taken")

    with pytest.raises(Conflict):
        create_a_taken_team()
    [event] = audit_events(db, "test.create")
    assert (event.outcome, event.error_code, event.details) == ("failure", "conflict", {"message": "taken"})
    assert "never-kept" not in {row.name for row in fetch_all(db, Team)}


def test_a_call_that_changed_nothing_can_skip_its_record(session: Session, db: Engine, world: World) -> None:
    target = AuditTarget("team")
    with audited(session, world.owner, "test.noop", target):
        target.record = False
    assert audit_events(db, "test.noop") == []
