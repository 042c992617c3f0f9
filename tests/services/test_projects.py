"""Project use cases on a real database: authorization, validation, audit."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from envhub.domain.phases import Phase
from envhub.errors import Conflict, EnvhubError, InvalidName, NotFound, PermissionDenied, ValidationFailed
from envhub.models import Environment, JobRun, Project
from envhub.services.projects import (
    create_project,
    delete_project,
    get_project,
    list_projects,
    project_defaults,
    update_project,
)
from tests.support.db import audit_events, fetch, fetch_all
from tests.support.world import World


def test_create_project_records_it_and_audits_it(session: Session, world: World, db: Engine) -> None:
    project = create_project(
        session=session,
        actor=world.admin,
        team_id=world.acme,
        name="shop",
        description="  The shop  ",
        repo_url="https://git.example.com/shop.git",
        default_ref="main",
        command="npm start",
        env={"NODE_ENV": "development"},
        health_path="/healthz",
    )
    stored = fetch(db, Project, project.id or 0)
    assert stored is not None
    assert (stored.name, stored.team_id, stored.description) == ("shop", world.acme, "The shop")
    assert stored.created_by_id == world.admin.user_id
    spec = project_defaults(stored)
    assert (spec.command, spec.ref, spec.health_path) == ("npm start", "main", "/healthz")
    assert spec.env == {"NODE_ENV": "development"}

    [event] = audit_events(db, "project.create")
    assert event.outcome == "success"
    assert (event.target_type, event.target_id, event.target) == ("project", project.id, "shop")
    assert (event.actor, event.actor_id, event.team_id) == ("adam", world.admin.user_id, world.acme)
    assert event.principal_type == "user"
    assert event.error_code is None


def test_project_defaults_are_filled_in(session: Session, world: World) -> None:
    project = create_project(session=session, actor=world.owner, team_id=world.acme, name="api")
    spec = project_defaults(project)
    assert spec.command == "python3 -m http.server $PORT"
    assert spec.repo_url is None
    assert spec.health_path == "/"


@pytest.mark.parametrize("name", ["Shop", "", "a" * 64, "-shop", "shop_1", "shop\n"])
def test_invalid_names_are_refused_and_the_failure_audited(
    session: Session, world: World, db: Engine, name: str
) -> None:
    with pytest.raises(InvalidName) as caught:
        create_project(session=session, actor=world.owner, team_id=world.acme, name=name)
    assert caught.value.code == "invalid_name"
    assert fetch_all(db, Project) == []
    [event] = audit_events(db, "project.create")
    assert (event.outcome, event.error_code) == ("failure", "invalid_name")
    assert event.team_id == world.acme
    assert event.details["message"] == caught.value.message


def test_invalid_defaults_are_refused(session: Session, world: World, db: Engine) -> None:
    with pytest.raises(ValidationFailed) as caught:
        create_project(
            session=session, actor=world.owner, team_id=world.acme, name="shop", repo_url="ftp://x"
        )
    assert caught.value.code == "repo_url_refused"
    assert "repo_url" in caught.value.details
    with pytest.raises(ValidationFailed):
        create_project(session=session, actor=world.owner, team_id=world.acme, name="shop", env={"PORT": "1"})
    assert fetch_all(db, Project) == []
    codes = [e.error_code for e in audit_events(db, "project.create")]
    assert codes == ["repo_url_refused", "validation_failed"]


def test_duplicate_name_in_a_team_is_a_conflict(session: Session, world: World, db: Engine) -> None:
    first = create_project(session=session, actor=world.owner, team_id=world.acme, name="shop")
    with pytest.raises(Conflict) as caught:
        create_project(session=session, actor=world.admin, team_id=world.acme, name="shop")
    assert caught.value.code == "conflict"
    assert caught.value.details["project_id"] == first.id
    # The same name in another team is fine.
    create_project(session=session, actor=world.outsider, team_id=world.globex, name="shop")
    assert len(fetch_all(db, Project)) == 2
    outcomes = [(e.outcome, e.error_code) for e in audit_events(db, "project.create")]
    assert outcomes == [("success", None), ("failure", "conflict"), ("success", None)]


@pytest.mark.parametrize(
    ("who", "error", "code"),
    [
        ("outsider", NotFound, "not_found"),
        ("nobody", NotFound, "not_found"),
        ("viewer", PermissionDenied, "forbidden"),
        ("member", PermissionDenied, "forbidden"),
    ],
)
def test_create_requires_admin_in_the_team(
    session: Session, world: World, db: Engine, who: str, error: type[EnvhubError], code: str
) -> None:
    with pytest.raises(error) as caught:
        create_project(session=session, actor=getattr(world, who), team_id=world.acme, name="shop")
    assert caught.value.code == code
    assert fetch_all(db, Project) == []
    [event] = audit_events(db, "project.create")
    assert (event.outcome, event.error_code, event.actor) == ("failure", code, getattr(world, who).name)


def _make_projects(session: Session, world: World, names: list[str]) -> None:
    for name in names:
        create_project(session=session, actor=world.owner, team_id=world.acme, name=name)


def test_list_pages_through_visible_projects_in_name_order(session: Session, world: World) -> None:
    _make_projects(session, world, ["echo", "alpha", "delta", "charlie", "bravo"])
    create_project(session=session, actor=world.outsider, team_id=world.globex, name="secret")

    first = list_projects(session=session, actor=world.viewer, offset=0, limit=2)
    assert [s.project.name for s in first.items] == ["alpha", "bravo"]
    assert (first.total, first.has_next) == (5, True)
    assert all(s.team == "acme" for s in first.items)
    second = list_projects(session=session, actor=world.viewer, offset=2, limit=2)
    assert [s.project.name for s in second.items] == ["charlie", "delta"]
    last = list_projects(session=session, actor=world.viewer, offset=4, limit=2)
    assert [s.project.name for s in last.items] == ["echo"]
    assert not last.has_next

    assert [s.project.name for s in list_projects(session=session, actor=world.outsider).items] == ["secret"]
    assert list_projects(session=session, actor=world.nobody).total == 0


def test_list_clamps_the_page(session: Session, world: World) -> None:
    _make_projects(session, world, ["a1", "a2"])
    page = list_projects(session=session, actor=world.owner, offset=-5, limit=0)
    assert (page.offset, page.limit, len(page.items)) == (0, 1, 1)
    assert list_projects(session=session, actor=world.owner, limit=10_000).limit == 200


def test_list_search(session: Session, world: World) -> None:
    _make_projects(session, world, ["web-shop", "shop-api", "billing"])
    page = list_projects(session=session, actor=world.member, search="SHOP")
    assert [s.project.name for s in page.items] == ["shop-api", "web-shop"]
    assert page.total == 2
    assert list_projects(session=session, actor=world.member, search="nothing").total == 0


def test_list_counts_live_environments(session: Session, world: World) -> None:
    project = create_project(session=session, actor=world.owner, team_id=world.acme, name="shop")
    assert project.id is not None
    for name, phase in (("a", Phase.ready), ("b", Phase.pending), ("c", Phase.deleted)):
        session.add(Environment(project_id=project.id, name=name, phase=phase))
    session.commit()
    [summary] = list_projects(session=session, actor=world.owner).items
    assert summary.environments == 2


def test_get(session: Session, world: World) -> None:
    project = create_project(session=session, actor=world.owner, team_id=world.acme, name="shop")
    assert project.id is not None
    assert get_project(session=session, actor=world.viewer, project_id=project.id).name == "shop"
    with pytest.raises(NotFound) as caught:
        get_project(session=session, actor=world.viewer, project_id=project.id + 1000)
    assert caught.value.code == "not_found"
    # Another team's project looks exactly like a missing one.
    with pytest.raises(NotFound) as hidden:
        get_project(session=session, actor=world.outsider, project_id=project.id)
    assert hidden.value.code == "not_found"


def test_update_changes_fields_and_audits_what_changed(session: Session, world: World, db: Engine) -> None:
    project = create_project(session=session, actor=world.owner, team_id=world.acme, name="shop")
    assert project.id is not None
    updated = update_project(
        session=session,
        actor=world.admin,
        project_id=project.id,
        changes={"command": "make serve", "description": "new", "health_path": "/"},
    )
    assert (updated.command, updated.description) == ("make serve", "new")
    stored = fetch(db, Project, project.id)
    assert stored is not None
    assert stored.command == "make serve"
    [event] = audit_events(db, "project.update")
    assert event.outcome == "success"
    assert event.details["changed"] == ["command", "description"]


def test_url_access_is_public_by_default_and_chosen_on_create_and_update(
    session: Session, world: World, db: Engine
) -> None:
    plain = create_project(session=session, actor=world.owner, team_id=world.acme, name="shop")
    guarded = create_project(
        session=session, actor=world.owner, team_id=world.acme, name="intranet", url_access="sign_in"
    )
    assert (plain.url_access, guarded.url_access) == ("public", "sign_in")
    assert plain.id is not None
    update_project(session=session, actor=world.admin, project_id=plain.id, changes={"url_access": "sign_in"})
    stored = fetch(db, Project, plain.id)
    assert stored is not None
    assert stored.url_access == "sign_in"
    assert audit_events(db, "project.update")[-1].details["changed"] == ["url_access"]
    for bad in ("private", "SIGN_IN"):
        with pytest.raises(ValidationFailed) as caught:
            update_project(
                session=session, actor=world.admin, project_id=plain.id, changes={"url_access": bad}
            )
        assert caught.value.details["field"] == "url_access"
    with pytest.raises(ValidationFailed) as caught:
        create_project(
            session=session, actor=world.owner, team_id=world.acme, name="x", url_access="everyone"
        )
    assert caught.value.details["field"] == "url_access"


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"name": "renamed"}, "validation_failed"),
        ({"command": "   "}, "validation_failed"),
        ({"default_ref": "../x"}, "validation_failed"),
    ],
)
def test_update_rejects_bad_changes(
    session: Session, world: World, db: Engine, changes: dict[str, str], code: str
) -> None:
    project = create_project(session=session, actor=world.owner, team_id=world.acme, name="shop")
    assert project.id is not None
    with pytest.raises(ValidationFailed) as caught:
        update_project(session=session, actor=world.owner, project_id=project.id, changes=changes)
    assert caught.value.code == code
    stored = fetch(db, Project, project.id)
    assert stored is not None
    assert (stored.name, stored.command, stored.default_ref) == ("shop", "python3 -m http.server $PORT", None)
    [event] = audit_events(db, "project.update")
    assert (event.outcome, event.error_code, event.target) == ("failure", code, "shop")


def test_update_and_delete_need_admin(session: Session, world: World, db: Engine) -> None:
    project = create_project(session=session, actor=world.owner, team_id=world.acme, name="shop")
    assert project.id is not None
    with pytest.raises(PermissionDenied):
        update_project(
            session=session, actor=world.member, project_id=project.id, changes={"description": "x"}
        )
    with pytest.raises(PermissionDenied):
        delete_project(session=session, actor=world.viewer, project_id=project.id)
    with pytest.raises(NotFound):
        delete_project(session=session, actor=world.outsider, project_id=project.id)
    assert fetch(db, Project, project.id) is not None
    failures = [(e.action, e.error_code) for e in audit_events(db) if e.outcome == "failure"]
    assert failures == [
        ("project.update", "forbidden"),
        ("project.delete", "forbidden"),
        ("project.delete", "not_found"),
    ]


def test_delete(session: Session, world: World, db: Engine) -> None:
    project = create_project(session=session, actor=world.owner, team_id=world.acme, name="shop")
    assert project.id is not None
    delete_project(session=session, actor=world.admin, project_id=project.id)
    assert fetch(db, Project, project.id) is None
    [event] = audit_events(db, "project.delete")
    assert (event.outcome, event.target_id, event.target) == ("success", project.id, "shop")
    with pytest.raises(NotFound):
        delete_project(session=session, actor=world.admin, project_id=project.id)


def test_delete_refuses_while_environments_live(session: Session, world: World, db: Engine) -> None:
    project = create_project(session=session, actor=world.owner, team_id=world.acme, name="shop")
    assert project.id is not None
    session.add(Environment(project_id=project.id, name="live", phase=Phase.ready))
    session.commit()
    with pytest.raises(Conflict) as caught:
        delete_project(session=session, actor=world.owner, project_id=project.id)
    assert caught.value.details == {"environments": 1}
    assert fetch(db, Project, project.id) is not None


def test_delete_removes_deleted_environments_and_their_runs(
    session: Session, world: World, db: Engine
) -> None:
    project = create_project(session=session, actor=world.owner, team_id=world.acme, name="shop")
    assert project.id is not None
    gone = Environment(project_id=project.id, name="old", phase=Phase.deleted)
    session.add(gone)
    session.flush()
    assert gone.id is not None
    session.add(JobRun(kind="teardown", environment_id=gone.id, generation=2))
    session.commit()
    delete_project(session=session, actor=world.owner, project_id=project.id)
    assert fetch_all(db, Project) == []
    assert fetch_all(db, Environment) == []
    assert fetch_all(db, JobRun) == []


def test_a_project_names_its_devcontainer_configuration_and_environments_get_it(
    session: Session, world: World, db: Engine
) -> None:
    project = create_project(
        session=session, actor=world.admin, team_id=world.acme, name="shop", devcontainer="docs"
    )
    assert project.id is not None
    assert project_defaults(project).devcontainer == "docs"
    with pytest.raises(ValidationFailed) as refused:
        update_project(
            session=session, actor=world.admin, project_id=project.id, changes={"devcontainer": "../etc"}
        )
    assert "devcontainer" in refused.value.details
    update_project(session=session, actor=world.admin, project_id=project.id, changes={"devcontainer": ""})
    stored = fetch(db, Project, project.id)
    assert stored is not None
    assert stored.devcontainer is None  # back to the default places
