"""Reading the audit trail, the local principal, and logs: authorized like any read."""

from __future__ import annotations

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session

from envhub.config import Settings
from envhub.errors import NotFound, PermissionDenied
from envhub.models import Membership, Project, Role, Team, User
from envhub.runtime.local import LocalRuntime
from envhub.services.audit_log import environment_audit_trail, recent_events
from envhub.services.environments import create_environment, delete_environment
from envhub.services.identity import DEFAULT_TEAM, LOCAL_USERNAME, default_team_id, ensure_local_principal
from envhub.services.listing import audit_page
from envhub.services.logs import environment_logs
from envhub.services.projects import create_project
from tests.support.db import fetch_all
from tests.support.fakes import FakeQueue
from tests.support.world import World


def _env(session: Session, world: World, project: Project, name: str = "pr-1") -> int:
    assert project.id is not None
    env = create_environment(
        session=session, actor=world.member, queue=FakeQueue(), project_id=project.id, name=name
    )
    assert env.id is not None
    return env.id


def test_environment_audit_trail_is_newest_first_and_paged(
    session: Session, world: World, project: Project
) -> None:
    env_id = _env(session, world, project)
    delete_environment(session=session, actor=world.member, queue=FakeQueue(), environment_id=env_id)
    with pytest.raises(PermissionDenied):
        delete_environment(session=session, actor=world.viewer, queue=FakeQueue(), environment_id=env_id)

    trail = environment_audit_trail(session=session, actor=world.viewer, environment_id=env_id, limit=2)
    assert trail.total == 3
    assert trail.has_next
    assert [(e.action, e.outcome) for e in trail.items] == [
        ("environment.delete", "failure"),
        ("environment.delete", "success"),
    ]
    rest = environment_audit_trail(session=session, actor=world.viewer, environment_id=env_id, offset=2)
    assert [e.action for e in rest.items] == ["environment.create"]
    with pytest.raises(NotFound):
        environment_audit_trail(session=session, actor=world.outsider, environment_id=env_id)


def test_recent_events_only_show_the_actor_s_teams(session: Session, world: World, project: Project) -> None:
    _env(session, world, project)
    create_project(session=session, actor=world.outsider, team_id=world.globex, name="secret")
    mine = recent_events(session=session, actor=world.viewer)
    assert {e.team_id for e in mine} == {world.acme}
    assert [e.action for e in mine] == ["environment.create", "project.create"]
    assert [e.target for e in recent_events(session=session, actor=world.outsider)] == ["secret"]
    assert recent_events(session=session, actor=world.nobody) == []
    assert len(recent_events(session=session, actor=world.viewer, limit=1)) == 1


def test_local_principal_is_created_once_as_owner_of_the_default_team(
    session: Session, settings: Settings, db: Engine
) -> None:
    first = ensure_local_principal(session)
    again = ensure_local_principal(session)
    assert first == again
    assert first.name == LOCAL_USERNAME
    [user] = fetch_all(db, User)
    [team] = fetch_all(db, Team)
    [membership] = fetch_all(db, Membership)
    assert (user.id, team.name) == (first.user_id, DEFAULT_TEAM)
    assert (membership.user_id, membership.team_id, membership.role) == (user.id, team.id, Role.owner)
    assert default_team_id(session, first) == team.id
    # The local user can do everything an owner can.
    project = create_project(session=session, actor=first, team_id=team.id or 0, name="mine")
    assert project.team_id == team.id


def test_default_team_of_someone_in_no_team(session: Session, world: World) -> None:
    with pytest.raises(PermissionDenied):
        default_team_id(session, world.nobody)


def test_environment_logs_are_authorized_reads(
    session: Session, world: World, project: Project, settings: Settings
) -> None:
    env_id = _env(session, world, project)
    runtime = LocalRuntime(settings.envs_dir)
    log = runtime.workspace_path(env_id).parent / "output.log"
    log.parent.mkdir(parents=True)
    log.write_text("".join(f"line {i}\n" for i in range(10)))
    assert environment_logs(
        session=session, actor=world.viewer, runtime=runtime, environment_id=env_id, tail=3
    )["lines"] == [
        "line 7",
        "line 8",
        "line 9",
    ]
    with pytest.raises(NotFound):
        environment_logs(session=session, actor=world.outsider, runtime=runtime, environment_id=env_id)


def test_the_trail_by_cursor_does_not_count_every_event(
    session: Session, world: World, project: Project
) -> None:
    # Programs walking the trail by cursor show no total; counting a year of events
    # (a hundred thousand rows) cost most of each page (bench/scale.py).
    _env(session, world, project)
    _env(session, world, project, name="pr-2")
    seen: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        seen.append(statement)

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", count)
    try:
        page = audit_page(session=session, actor=world.viewer, limit=2)
        recent = recent_events(session=session, actor=world.viewer)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert [record["action"] for record in page.items] == ["environment.create", "environment.create"]
    assert page.next_cursor
    assert len(recent) == 3
    assert not [statement for statement in seen if "count(" in statement.lower()]
