"""Hours and cost through an environment's life: provision, sleep, wake, delete, at controlled times."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, select

from envhub.config import Settings, override_settings
from envhub.domain.phases import Phase
from envhub.errors import NotFound
from envhub.models import Environment, EnvironmentSpan, Project
from envhub.services import costs, environments, sleeping
from envhub.services.convergence import set_phase
from envhub.services.projects import create_project
from tests.support.fakes import FakeQueue
from tests.support.world import World

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=12)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def at(self, hours: float) -> None:
        self.now = T0 + timedelta(hours=hours)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The time spans are opened and closed at."""
    clock = Clock()
    monkeypatch.setattr("envhub.models.environment_span.utcnow", lambda: clock.now)
    return clock


@pytest.fixture
def project(session: Session, world: World) -> Project:
    return create_project(session=session, actor=world.owner, team_id=world.acme, name="shop")


@pytest.fixture
def priced(settings: Settings) -> Iterator[None]:
    with override_settings(
        settings.model_copy(
            update={"price_cpu_hour": 0.05, "price_memory_gib_hour": 0.01, "price_currency": "EUR"}
        )
    ):
        yield


def _move(session: Session, environment: Environment, world: World, phase: Phase) -> None:
    """What the jobs do when they finish a step: set_phase, then commit."""
    set_phase(session, environment, phase, team_id=world.acme, target=environment.name, message=phase.value)
    session.commit()


def _create(session: Session, world: World, project: Project, name: str) -> Environment:
    assert project.id is not None
    return environments.create_environment(
        session=session, actor=world.owner, queue=FakeQueue(), project_id=project.id, name=name
    )


def _spans(session: Session, environment_id: int | None) -> list[tuple[str, float, float | None]]:
    rows = session.exec(
        select(EnvironmentSpan)
        .where(EnvironmentSpan.environment_id == environment_id)
        .order_by(EnvironmentSpan.id)
    ).all()
    return [
        (
            row.state.value,
            (row.started_at - T0).total_seconds() / 3600,
            None if row.ended_at is None else (row.ended_at - T0).total_seconds() / 3600,
        )
        for row in rows
    ]


def test_provision_sleep_wake_delete_gives_hours_and_cost(
    session: Session, world: World, project: Project, clock: Clock, priced: None
) -> None:
    queue = FakeQueue()
    environment = _create(session, world, project, "web")  # pending: nothing counted
    assert environment.id is not None
    _move(session, environment, world, Phase.provisioning)  # T0: running
    clock.at(1)
    _move(session, environment, world, Phase.ready)  # still running: no new span
    clock.at(3)
    sleeping.sleep_environment(
        session=session, actor=world.member, queue=queue, environment_id=environment.id
    )
    _move(session, environment, world, Phase.sleeping)  # the sleep job is done
    clock.at(8)
    sleeping.wake_environment(session=session, actor=world.member, queue=queue, environment_id=environment.id)
    _move(session, environment, world, Phase.provisioning)  # the wake job scales it back
    clock.at(9)
    _move(session, environment, world, Phase.ready)
    clock.at(10)
    environments.delete_environment(
        session=session, actor=world.owner, queue=queue, environment_id=environment.id
    )
    clock.at(10.5)
    _move(session, environment, world, Phase.deleted)

    assert _spans(session, environment.id) == [
        ("running", 0.0, 3.0),
        ("asleep", 3.0, 8.0),
        ("running", 8.0, 10.0),
    ]
    view = costs.environment_costs(
        session=session, actor=world.viewer, environment_id=environment.id, now=NOW
    )
    assert view["start"] == datetime(2026, 12, 1, tzinfo=UTC).isoformat()
    assert view["reserved"] == "2 CPU · 4 GiB"
    figures = view["figures"]
    # 5 h running at 2 cores and 4 GiB, 5 h asleep: 10 CPU-h x 0.05 + 20 GiB-h x 0.01.
    assert (figures["running_hours"], figures["asleep_hours"]) == (5.0, 5.0)
    assert (figures["cpu_hours"], figures["memory_gib_hours"]) == (10.0, 20.0)
    assert (figures["cost"], figures["currency"]) == (0.7, "EUR")
    assert figures["summary"].endswith("0.70 EUR")

    # A window that starts after it was deleted has nothing.
    later = costs.environment_costs(
        session=session, actor=world.viewer, environment_id=environment.id, now=NOW + timedelta(days=31)
    )
    assert later["figures"]["running_hours"] == later["figures"]["asleep_hours"] == 0.0


def test_a_team_lists_its_environments_costliest_first_a_page_at_a_time(
    session: Session, world: World, project: Project, clock: Clock, settings: Settings
) -> None:
    empty = costs.team_costs(session=session, actor=world.member, team_id=world.acme, now=NOW)
    assert empty["environments"] == []
    assert empty["total"]["running_hours"] == 0.0
    assert empty["priced"] is False
    assert empty["total"]["cost"] is None

    short, long = _create(session, world, project, "short"), _create(session, world, project, "long")
    _move(session, long, world, Phase.provisioning)
    clock.at(9)
    _move(session, short, world, Phase.provisioning)  # open: 3 h up to NOW
    first = costs.team_costs(session=session, actor=world.member, team_id=world.acme, limit=1, now=NOW)
    assert [row["name"] for row in first["environments"]] == ["long"]
    assert first["total"]["running_hours"] == 15.0  # every environment, not only this page
    assert first["total"]["cost"] is None
    assert "EUR" not in first["total"]["summary"]
    second = costs.team_costs(
        session=session, actor=world.member, team_id=world.acme, limit=1, cursor=first["next_cursor"], now=NOW
    )
    assert [row["name"] for row in second["environments"]] == ["short"]
    assert second["next_cursor"] is None

    with pytest.raises(NotFound):
        costs.team_costs(session=session, actor=world.outsider, team_id=world.acme, now=NOW)
