"""The view models every face shows (services/*_views.py): facts and permission flags, computed once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlmodel import Session

from envhub.config import Settings, override_settings
from envhub.domain.phases import Phase
from envhub.errors import NotFound
from envhub.models import Environment, Project
from envhub.services import environment_views, identity_views, ports, project_views
from envhub.services.environments import create_environment
from envhub.services.projects import create_project, update_project
from envhub.services.sharing import share_environment
from envhub.services.tokens import create_agent_token
from tests.support.fakes import FakeQueue
from tests.support.world import World


def _env(session: Session, world: World, project: Project, name: str = "pr-1") -> int:
    assert project.id is not None
    created = create_environment(
        session=session, actor=world.member, queue=FakeQueue(), project_id=project.id, name=name
    )
    assert created.id is not None
    return created.id


def _set_phase(session: Session, environment_id: int, phase: Phase) -> None:
    row = session.get(Environment, environment_id)
    assert row is not None
    row.phase = phase
    row.desired_state = "absent" if phase in (Phase.deleting, Phase.deleted) else "present"
    session.add(row)
    session.commit()


def test_a_project_names_its_team_among_many_projects_with_similar_names(
    session: Session, world: World, project: Project
) -> None:
    # The page once found the team by searching projects for the name (50 at most):
    # names that sort before it and contain it hid the team.
    for number in range(60):
        create_project(session=session, actor=world.owner, team_id=world.acme, name=f"a-shop-{number:02}")
    assert project.id is not None
    view = project_views.project_overview(session=session, actor=world.viewer, project_id=project.id)
    assert view["header"]["team"] == "acme"
    assert view["header"]["team_id"] == world.acme
    summary = project_views.project_summary(session=session, actor=world.viewer, project_id=project.id)
    assert summary == view["header"]
    assert (summary["url_access"], summary["url_access_label"]) == ("public", "Anyone with the link")


def test_the_projects_overview_pages_and_names_channels(
    session: Session, world: World, project: Project
) -> None:
    view = project_views.projects_overview(session=session, actor=world.viewer, search=" sho ")
    assert [row["name"] for row in view["rows"]] == ["shop"]
    assert view["rows"][0]["team"] == "acme"
    assert view["page"] == {"offset": 0, "limit": 20, "total": 1, "has_next": False, "label": "1–1 of 1"}
    assert view["channels"] == [f"envhub:changed:project:{project.id}"]
    assert project_views.projects_overview(session=session, actor=world.outsider)["rows"] == []


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        ("owner", (True, True, True, True)),
        ("member", (True, True, False, True)),
        ("viewer", (False, False, False, False)),
    ],
)
def test_permission_flags_follow_the_role(
    session: Session, world: World, project: Project, who: str, expected: tuple[bool, ...]
) -> None:
    environment_id = _env(session, world, project)
    _set_phase(session, environment_id, Phase.ready)
    flags = environment_views.environment_permissions(
        session=session, actor=getattr(world, who), environment_id=environment_id
    )
    assert (flags["can_redeploy"], flags["can_delete"], flags["can_share"], flags["can_shell"]) == expected
    assert flags["can_watch"]  # every role in the team may watch
    assert flags["can_agent"] == flags["can_shell"]


def test_permission_flags_follow_the_phase(session: Session, world: World, project: Project) -> None:
    environment_id = _env(session, world, project)
    _set_phase(session, environment_id, Phase.deleting)
    flags = environment_views.environment_permissions(
        session=session, actor=world.owner, environment_id=environment_id
    )
    assert not flags["can_redeploy"]
    assert not flags["can_delete"]
    assert flags["can_share"]
    _set_phase(session, environment_id, Phase.deleted)
    flags = environment_views.environment_permissions(
        session=session, actor=world.owner, environment_id=environment_id
    )
    assert not any((flags["can_share"], flags["can_agent"], flags["can_redeploy"], flags["can_delete"]))


def test_a_share_gives_the_flags_of_its_role(session: Session, world: World, project: Project) -> None:
    environment_id = _env(session, world, project)
    _set_phase(session, environment_id, Phase.ready)
    share_environment(
        session=session,
        actor=world.owner,
        environment_id=environment_id,
        role="editor",
        user=world.outsider.name,
    )
    flags = environment_views.environment_permissions(
        session=session, actor=world.outsider, environment_id=environment_id
    )
    assert flags["can_redeploy"]
    assert flags["can_shell"]
    assert not flags["can_delete"]
    assert not flags["can_share"]
    access = identity_views.access_overview(
        session=session, actor=world.outsider, environment_id=environment_id
    )
    assert access["permissions"] == flags
    assert [share["grantee"] for share in access["shares"]] == [world.outsider.name]


def test_the_environment_overview_holds_what_every_face_shows(
    session: Session, world: World, project: Project
) -> None:
    environment_id = _env(session, world, project)
    view = environment_views.environment_overview(
        session=session, actor=world.viewer, runtime=ports.runtime(), environment_id=environment_id
    )
    json.dumps(view)  # plain data: ids, strings, booleans, lists
    assert view["detail"]["id"] == environment_id
    assert view["detail"]["phase"] == "pending"
    assert view["detail"]["created_at"].endswith("+00:00")
    assert view["project_name"] == "shop"
    assert view["run"]["kind"] == "provision"
    assert [step["status"] for step in view["steps"]] == ["pending"] * len(view["steps"]) != []
    assert [row["action"] for row in view["audit"]] == ["environment.create"]
    assert view["audit_page"]["total"] == 1
    assert view["permissions"]["can_delete"] is False  # a viewer
    assert view["terminal"] == {"ready": False, "containers": [], "can_shell": False}


def test_an_environment_under_another_project_is_not_found(
    session: Session, world: World, project: Project
) -> None:
    environment_id = _env(session, world, project)
    other = create_project(session=session, actor=world.owner, team_id=world.acme, name="other")
    with pytest.raises(NotFound):
        environment_views.environment_overview(
            session=session,
            actor=world.owner,
            runtime=ports.runtime(),
            environment_id=environment_id,
            project_id=other.id,
        )


def test_a_failed_environment_carries_the_registry_advice(
    session: Session, world: World, project: Project
) -> None:
    environment_id = _env(session, world, project)
    row = session.get(Environment, environment_id)
    assert row is not None
    row.phase, row.error_code = Phase.failed, "process_exited"
    session.add(row)
    session.commit()
    detail = environment_views.environment_summary(
        session=session, actor=world.viewer, environment_id=environment_id
    )
    assert "$PORT" in detail["advice"]


def test_environment_rows_name_the_creator(session: Session, world: World, project: Project) -> None:
    _env(session, world, project, "pr-1")
    _env(session, world, project, "pr-2")
    assert project.id is not None
    rows, page = environment_views.environment_rows(
        session=session, actor=world.viewer, project_id=project.id, limit=1
    )
    assert [(row["name"], row["creator"]) for row in rows] == [("pr-2", world.member.name)]
    assert page["has_next"]
    assert page["label"] == "1–1 of 2"


def test_token_rows_name_an_agent_tokens_environment(
    session: Session, world: World, project: Project
) -> None:
    environment_id = _env(session, world, project)
    _set_phase(session, environment_id, Phase.ready)
    create_agent_token(
        session=session,
        actor=world.member,
        environment_id=environment_id,
        name="bot",
        scopes=["read"],
        expires_in_days=1,
    )
    [row] = identity_views.token_rows(session=session, actor=world.member)
    assert (row["name"], row["kind"], row["environment"]) == ("bot", "agent", "pr-1")


def test_team_overview_flags_what_the_role_may_manage(session: Session, world: World) -> None:
    owner = identity_views.team_overview(session=session, actor=world.owner, team_id=world.acme)
    viewer = identity_views.team_overview(session=session, actor=world.viewer, team_id=world.acme)
    assert (owner["can_manage"], owner["can_own"], owner["my_role"]) == (True, True, "owner")
    assert (viewer["can_manage"], viewer["can_own"], viewer["invites"]) == (False, False, [])
    rows = {row["name"]: row for row in identity_views.team_rows(session=session, actor=world.member)}
    assert rows["acme"]["can_create_projects"] is False  # members create environments, not projects


def test_an_audit_row_of_a_backup_or_restore_names_the_service_and_the_backup() -> None:
    from envhub.models import AuditEvent

    def row(action: str, details: dict[str, object]) -> str:
        event = AuditEvent(actor="max", action=action, target_type="environment", details=details)
        return environment_views.audit_row(event)["summary"]

    assert (
        row("service.backup", {"service": "db", "backup": 12, "trigger": "schedule"})
        == "db, backup 12 (schedule)"
    )
    assert row("service.restore", {"service": "db", "backup": 12, "restore": 3}) == "db, backup 12"
    assert row("service.rotate", {"service": "cache", "job_run": 9}) == "cache"


EXAMPLE_CATALOG = Path(__file__).resolve().parents[2] / "deploy" / "catalog.example.yaml"


def test_a_declared_catalog_service_shows_its_entry_s_title_parameters_and_variables(
    session: Session, world: World, project: Project, settings: Settings
) -> None:
    assert project.id is not None
    services = [
        {"name": "db", "kind": "postgres"},
        {"name": "mq", "kind": "catalog", "entry": "rabbitmq", "parameters": {"version": "3.12"}},
        {"name": "events", "kind": "catalog", "entry": "rabbitmq", "prefix": "EVENTS_"},
    ]
    with override_settings(settings.model_copy(update={"services_catalog": EXAMPLE_CATALOG})):
        update_project(
            session=session, actor=world.owner, project_id=project.id, changes={"backing": services}
        )
        header = project_views.project_summary(session=session, actor=world.viewer, project_id=project.id)
    db, mq, events = header["backing"]
    assert (db["label"], db["parameters"]) == ("PostgreSQL", [])
    assert (mq["label"], mq["parameters"], mq["variables"]) == (
        "RabbitMQ (catalog)",
        [{"name": "version", "value": "3.12"}],
        ["AMQP_URL"],
    )
    # Left unset, a parameter shows the default its instances get; a prefix shows in the names.
    assert (events["parameters"], events["variables"]) == (
        [{"name": "version", "value": "3.13"}],
        ["EVENTS_AMQP_URL"],
    )
    assert mq["settings"] == services[1]  # what the page sends back when the list changes

    # The operator took the catalog away: the declaration still shows, as it was written.
    header = project_views.project_summary(session=session, actor=world.viewer, project_id=project.id)
    _, mq, events = header["backing"]
    assert (mq["label"], mq["parameters"], mq["variables"]) == (
        "rabbitmq (catalog)",
        [{"name": "version", "value": "3.12"}],
        [],
    )
    assert events["parameters"] == []
