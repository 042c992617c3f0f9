"""Teams (roles, invitations, the last owner) and sharing one environment (roles, expiry, teams)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from envhub.config import Settings
from envhub.domain.policy import Action
from envhub.domain.principals import Principal
from envhub.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from envhub.models import Environment, EnvironmentShare, Invite, Membership, Project, Team, User
from envhub.models.base import utcnow
from envhub.services import credentials, sharing, teams
from envhub.services.access import authorize_environment
from envhub.services.environments import delete_environment, get_environment, redeploy_environment
from tests.support.db import audit_events
from tests.support.fakes import FakeQueue
from tests.support.world import World


def role_of(session: Session, team_id: int, principal: Principal) -> str | None:
    row = session.exec(
        select(Membership).where(Membership.team_id == team_id, Membership.user_id == principal.user_id)
    ).first()
    return row.role.value if row else None


# -- teams ---------------------------------------------------------------------------


def test_creating_a_team_makes_its_creator_the_owner(
    settings: Settings, world: World, session: Session, db: Engine
) -> None:
    team = teams.create_team(session=session, actor=world.nobody, name="research", display_name="Research")
    assert role_of(session, team.id or 0, world.nobody) == "owner"
    with pytest.raises(Conflict):
        teams.create_team(session=session, actor=world.nobody, name="research")
    with pytest.raises(ValidationFailed):
        teams.create_team(session=session, actor=world.nobody, name="Not A Label")
    assert [e.outcome for e in audit_events(db, "team.create")] == ["success", "failure", "failure"]


def test_people_see_only_their_own_teams(settings: Settings, world: World, session: Session) -> None:
    assert [t.team.name for t in teams.list_my_teams(session=session, actor=world.viewer)] == ["acme"]
    assert [t.team.name for t in teams.list_my_teams(session=session, actor=world.outsider)] == ["globex"]
    with pytest.raises(NotFound):
        teams.get_team(session=session, actor=world.outsider, team_id=world.acme)
    with pytest.raises(NotFound):
        teams.list_members(session=session, actor=world.nobody, team_id=world.acme)
    members = teams.list_members(session=session, actor=world.viewer, team_id=world.acme)
    assert {(m.user.username, m.role) for m in members} == {
        ("olivia", "owner"),
        ("adam", "admin"),
        ("max", "member"),
        ("vera", "viewer"),
    }


def test_only_owners_touch_ownership(settings: Settings, world: World, session: Session) -> None:
    with pytest.raises(PermissionDenied):  # admins manage members below owner
        teams.change_role(
            session=session,
            actor=world.admin,
            team_id=world.acme,
            user_id=world.member.user_id or 0,
            role="owner",
        )
    with pytest.raises(PermissionDenied):
        teams.change_role(
            session=session,
            actor=world.admin,
            team_id=world.acme,
            user_id=world.owner.user_id or 0,
            role="viewer",
        )
    with pytest.raises(PermissionDenied):
        teams.invite(
            session=session, actor=world.admin, team_id=world.acme, email="boss@acme.example", role="owner"
        )
    teams.change_role(
        session=session,
        actor=world.admin,
        team_id=world.acme,
        user_id=world.member.user_id or 0,
        role="viewer",
    )
    assert role_of(session, world.acme, world.member) == "viewer"
    with pytest.raises(PermissionDenied):  # members and viewers manage nothing
        teams.change_role(
            session=session,
            actor=world.viewer,
            team_id=world.acme,
            user_id=world.member.user_id or 0,
            role="admin",
        )
    teams.change_role(
        session=session, actor=world.owner, team_id=world.acme, user_id=world.admin.user_id or 0, role="owner"
    )
    assert role_of(session, world.acme, world.admin) == "owner"


def test_a_team_keeps_its_last_owner(settings: Settings, world: World, session: Session) -> None:
    with pytest.raises(Conflict, match="at least one owner"):
        teams.change_role(
            session=session,
            actor=world.owner,
            team_id=world.acme,
            user_id=world.owner.user_id or 0,
            role="admin",
        )
    with pytest.raises(Conflict, match="at least one owner"):
        teams.remove_member(
            session=session, actor=world.owner, team_id=world.acme, user_id=world.owner.user_id or 0
        )
    teams.remove_member(
        session=session, actor=world.viewer, team_id=world.acme, user_id=world.viewer.user_id or 0
    )  # leaving
    assert role_of(session, world.acme, world.viewer) is None
    teams.remove_member(
        session=session, actor=world.admin, team_id=world.acme, user_id=world.member.user_id or 0
    )
    assert role_of(session, world.acme, world.member) is None


def test_invitations(settings: Settings, world: World, session: Session, db: Engine) -> None:
    made = teams.invite(
        session=session,
        actor=world.admin,
        team_id=world.acme,
        email=" New.Person@Acme.example ",
        role="viewer",
    )
    assert made.email == "new.person@acme.example"
    with pytest.raises(Conflict, match="already invited"):
        teams.invite(session=session, actor=world.admin, team_id=world.acme, email="new.person@acme.example")
    with pytest.raises(ValidationFailed):
        teams.invite(session=session, actor=world.admin, team_id=world.acme, email="not an email")
    with pytest.raises(PermissionDenied):
        teams.invite(session=session, actor=world.member, team_id=world.acme, email="x@acme.example")
    with pytest.raises(NotFound):
        teams.invite(session=session, actor=world.outsider, team_id=world.acme, email="x@acme.example")
    assert [i.email for i in teams.list_invites(session=session, actor=world.admin, team_id=world.acme)] == [
        "new.person@acme.example"
    ]
    with pytest.raises(PermissionDenied):  # addresses are for those who manage the team
        teams.list_invites(session=session, actor=world.viewer, team_id=world.acme)
    # Accepted at first sign-in with that (verified) address:
    person = User(username="newperson", email="new.person@acme.example")
    session.add(person)
    session.commit()
    joined = teams.accept_invites(session, person, actor=Principal(name="newperson", user_id=person.id))
    session.commit()
    assert [t.name for t in joined] == ["acme"]
    assert session.exec(select(Invite)).one().accepted_by_id == person.id
    # An expired invitation is not accepted and makes way for a new one.
    late = teams.invite(session=session, actor=world.admin, team_id=world.acme, email="late@acme.example")
    session.exec(
        update(Invite).where(Invite.id == late.id).values(expires_at=utcnow() - timedelta(seconds=1))
    )  # type: ignore[call-overload]
    session.commit()
    tardy = User(username="tardy", email="late@acme.example")
    session.add(tardy)
    session.commit()
    assert teams.accept_invites(session, tardy, actor=Principal(name="tardy", user_id=tardy.id)) == []
    teams.invite(session=session, actor=world.admin, team_id=world.acme, email="late@acme.example")


def test_kubectl_groups_follow_team_roles(settings: Settings, world: World, session: Session) -> None:
    assert credentials.kubernetes_groups(session=session, actor=world.viewer) == ["envhub:team:acme"]
    assert credentials.kubernetes_groups(session=session, actor=world.member) == [
        "envhub:team:acme",
        "envhub:team:acme:edit",
    ]
    assert credentials.kubernetes_groups(session=session, actor=world.nobody) == []


# -- sharing ----------------------------------------------------------------------------


@pytest.fixture
def env(session: Session, world: World) -> int:
    project = Project(team_id=world.acme, name="shop")
    session.add(project)
    session.flush()
    environment = Environment(
        project_id=project.id or 0, name="pr-7", phase="ready", spec={"command": "true"}
    )
    session.add(environment)
    session.commit()
    return environment.id or 0


def can(session: Session, actor: Principal, environment_id: int, action: Action) -> str:
    environment = session.get(Environment, environment_id)
    assert environment is not None
    try:
        authorize_environment(session, actor, environment, action, what="environment")
    except NotFound:
        return "not_found"
    except PermissionDenied:
        return "forbidden"
    return "yes"


SHARE_EXPECTATIONS = {
    "viewer": {
        Action.environment_read: "yes",
        Action.environment_watch: "yes",
        Action.environment_shell: "forbidden",
        Action.environment_redeploy: "forbidden",
        Action.environment_delete: "forbidden",
        Action.environment_share: "forbidden",
    },
    "editor": {
        Action.environment_read: "yes",
        Action.environment_watch: "yes",
        Action.environment_shell: "yes",
        Action.environment_redeploy: "yes",
        Action.environment_delete: "forbidden",
        Action.environment_share: "forbidden",
    },
    "admin": {
        Action.environment_read: "yes",
        Action.environment_watch: "yes",
        Action.environment_shell: "yes",
        Action.environment_redeploy: "yes",
        Action.environment_delete: "yes",
        Action.environment_share: "yes",
    },
}


@pytest.mark.parametrize("role", ["viewer", "editor", "admin"])
def test_share_roles(settings: Settings, world: World, session: Session, env: int, role: str) -> None:
    assert can(session, world.nobody, env, Action.environment_read) == "not_found"
    sharing.share_environment(session=session, actor=world.admin, environment_id=env, role=role, user="nina")
    assert {
        action: can(session, world.nobody, env, action) for action in SHARE_EXPECTATIONS[role]
    } == SHARE_EXPECTATIONS[role]
    shared = sharing.list_shared_environments(session=session, actor=world.nobody)
    assert [(s.environment.id, s.role) for s in shared] == [(env, role)]


def test_a_share_lapses_by_itself(
    settings: Settings, world: World, session: Session, env: int, db: Engine
) -> None:
    soon = utcnow() + timedelta(hours=1)
    sharing.share_environment(
        session=session, actor=world.admin, environment_id=env, role="editor", user="nina", expires_at=soon
    )
    assert get_environment(session=session, actor=world.nobody, environment_id=env).id == env
    session.commit()  # end the read: on SQLite an open transaction holds the write lock
    with Session(db) as other:  # time passes
        other.exec(update(EnvironmentShare).values(expires_at=utcnow() - timedelta(seconds=1)))  # type: ignore[call-overload]
        other.commit()
    session.expire_all()
    with pytest.raises(NotFound):
        get_environment(session=session, actor=world.nobody, environment_id=env)
    assert sharing.list_shared_environments(session=session, actor=world.nobody) == []
    access = sharing.list_access(session=session, actor=world.viewer, environment_id=env)
    assert [(s.grantee, s.active) for s in access.shares] == [("nina", False)]


def test_a_team_share_gives_each_member_at_most_their_own_role(
    settings: Settings, world: World, session: Session, env: int
) -> None:
    globex = session.get(Team, world.globex)
    assert globex is not None
    intern = User(username="ivan")
    session.add(intern)
    session.flush()
    session.add(Membership(team_id=world.globex, user_id=intern.id or 0, role="viewer"))
    session.commit()
    sharing.share_environment(
        session=session, actor=world.owner, environment_id=env, role="admin", team="globex"
    )
    otto, ivan = world.outsider, Principal(name="ivan", user_id=intern.id)
    assert (
        can(session, otto, env, Action.environment_delete) == "yes"
    )  # globex owner: admin share stays admin
    assert can(session, ivan, env, Action.environment_read) == "yes"
    assert can(session, ivan, env, Action.environment_shell) == "forbidden"  # globex viewer: capped at viewer


def test_who_may_share(settings: Settings, world: World, session: Session, env: int, db: Engine) -> None:
    with pytest.raises(PermissionDenied):  # members work in environments but do not hand out access
        sharing.share_environment(
            session=session, actor=world.member, environment_id=env, role="viewer", user="nina"
        )
    with pytest.raises(NotFound):
        sharing.share_environment(
            session=session, actor=world.outsider, environment_id=env, role="viewer", user="nina"
        )
    with pytest.raises(Conflict):
        sharing.share_environment(
            session=session, actor=world.admin, environment_id=env, role="viewer", team="acme"
        )
    with pytest.raises(NotFound):
        sharing.share_environment(
            session=session, actor=world.admin, environment_id=env, role="viewer", user="nobody-here"
        )
    with pytest.raises(ValidationFailed):
        sharing.share_environment(
            session=session, actor=world.admin, environment_id=env, role="owner", user="nina"
        )
    with pytest.raises(ValidationFailed):
        sharing.share_environment(
            session=session,
            actor=world.admin,
            environment_id=env,
            role="viewer",
            user="nina",
            expires_at=utcnow() - timedelta(days=1),
        )
    # An environment admin by share may share further, and change or remove access.
    sharing.share_environment(
        session=session, actor=world.admin, environment_id=env, role="admin", user="otto"
    )
    share = sharing.share_environment(
        session=session, actor=world.outsider, environment_id=env, role="viewer", user="nina"
    )
    sharing.share_environment(
        session=session, actor=world.outsider, environment_id=env, role="editor", user="nina"
    )
    assert session.get(EnvironmentShare, share.id).role.value == "editor"  # type: ignore[union-attr]
    sharing.revoke_share(session=session, actor=world.outsider, share_id=share.id or 0)
    assert can(session, world.nobody, env, Action.environment_read) == "not_found"
    session.commit()
    events = [(e.action, e.outcome) for e in audit_events(db) if e.action.startswith("environment.")]
    assert ("environment.share", "failure") in events
    assert ("environment.unshare", "success") in events


def test_shared_people_act_through_the_same_use_cases(
    settings: Settings, world: World, session: Session, env: int
) -> None:
    sharing.share_environment(
        session=session, actor=world.admin, environment_id=env, role="editor", user="nina"
    )
    queue = FakeQueue()
    redeploy_environment(session=session, actor=world.nobody, queue=queue, environment_id=env)
    with pytest.raises(PermissionDenied):
        delete_environment(session=session, actor=world.nobody, queue=queue, environment_id=env)
    assert len(queue.jobs) == 1
    from envhub.services.projects import get_project

    with pytest.raises(NotFound):  # the rest of the project stays out of reach
        get_project(session=session, actor=world.nobody, project_id=session.get(Environment, env).project_id)  # type: ignore[union-attr]


def test_terminals_follow_the_share_role(
    settings: Settings, world: World, session: Session, env: int
) -> None:
    """A shared viewer may watch terminals; a shared editor may open and drive one."""
    from envhub.services import terminal
    from tests.identity.matrix_world import PortRuntime

    runtime = PortRuntime()
    sharing.share_environment(
        session=session, actor=world.admin, environment_id=env, role="viewer", user="nina"
    )
    watching = terminal.join_shell(
        session=session, actor=world.nobody, environment_id=env, terminal_id="t", watching=True
    )
    assert watching.may_drive is False
    with pytest.raises(PermissionDenied):
        terminal.open_shell(
            session=session,
            actor=world.nobody,
            runtime=runtime,
            environment_id=env,  # type: ignore[arg-type]
            terminal_id="t1",
            container=None,
            recording="recordings/t1.cast",
        )
    sharing.share_environment(
        session=session, actor=world.admin, environment_id=env, role="editor", user="nina"
    )
    _shell, access = terminal.open_shell(
        session=session,
        actor=world.nobody,
        runtime=runtime,
        environment_id=env,  # type: ignore[arg-type]
        terminal_id="t2",
        container=None,
        recording="recordings/t2.cast",
    )
    assert access.may_drive is True
