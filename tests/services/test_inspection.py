"""Looking inside an environment is shared and throttled, however many faces ask (services/inspection.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlmodel import Session

from envhub.domain.phases import Phase
from envhub.errors import NotFound
from envhub.models import Environment, Project
from envhub.runtime.base import Inspection, Runtime
from envhub.services import inspection, ports, units
from envhub.services.environments import create_environment
from tests.support.fakes import FakeQueue
from tests.support.world import World


class CountingRuntime:
    """The configured runtime port, counting (and optionally slowing) its inspections."""

    def __init__(self, runtime: Runtime, delay: float = 0.0) -> None:
        self._runtime, self.delay, self.calls = runtime, delay, 0
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._runtime, name)

    def inspect(self, environment_id: int) -> Inspection:
        with self._lock:
            self.calls += 1
        time.sleep(self.delay)
        return Inspection(location=f"env-{environment_id}")


def _forget() -> None:
    # An inspection an earlier test started may still be under way: it would
    # store its answer after the clearing.
    for thread in threading.enumerate():
        if thread.name.startswith("envhub-inspect-"):
            thread.join(timeout=30)
    inspection._results.clear()
    inspection._asking.clear()


@pytest.fixture(autouse=True)
def forget_inspections() -> Iterator[None]:
    # Ids start again in every test's database: answers must not carry over.
    _forget()
    yield
    _forget()


@pytest.fixture
def environment_id(session: Session, world: World, project: Project) -> int:
    assert project.id is not None
    created = create_environment(
        session=session, actor=world.member, queue=FakeQueue(), project_id=project.id, name="pr-1"
    )
    assert created.id is not None
    _phase(session, created.id, Phase.ready)
    return created.id


def _phase(session: Session, environment_id: int, phase: Phase, generation: int = 0) -> None:
    row = session.get(Environment, environment_id)
    assert row is not None
    row.phase, row.observed_generation = phase, generation
    session.add(row)
    session.commit()


def _look(session: Session, world: World, runtime: Any, environment_id: int) -> inspection.WorkloadsView:
    # As the faces do: a read-only session of its own, which holds no lock while
    # the runtime is asked (on SQLite a writable one would keep the inspection
    # thread's session waiting for the write lock).
    with units.read_only() as reading:
        return inspection.environment_workloads(
            session=reading, actor=world.viewer, runtime=runtime, environment_id=environment_id
        )


def test_many_askers_share_one_inspection(session: Session, world: World, environment_id: int) -> None:
    runtime = CountingRuntime(ports.runtime())
    views = [_look(session, world, runtime, environment_id) for _ in range(5)]
    assert runtime.calls == 1
    assert {view["info"]["location"] for view in views} == {f"env-{environment_id}"}


def test_a_change_of_the_environment_allows_a_new_look_sooner(
    session: Session, world: World, environment_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inspection, "INSPECT_AFTER_CHANGE", 0.2)
    runtime = CountingRuntime(ports.runtime())
    _look(session, world, runtime, environment_id)
    time.sleep(0.3)
    _look(session, world, runtime, environment_id)
    assert runtime.calls == 1, "same state: the answer is still fresh"
    _phase(session, environment_id, Phase.ready, generation=1)
    _look(session, world, runtime, environment_id)
    assert runtime.calls == 2


def test_a_slow_runtime_holds_nobody_up(
    session: Session, world: World, environment_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inspection, "INSPECT_WAIT", 0.1)
    runtime = CountingRuntime(ports.runtime(), delay=0.6)
    started = time.monotonic()
    first = _look(session, world, runtime, environment_id)
    assert time.monotonic() - started < 0.5
    assert first["info"]["note"] == "Asking the runtime…"
    second = _look(session, world, runtime, environment_id)
    assert runtime.calls == 1, "the question under way is not asked twice"
    assert second["info"]["note"] == "Asking the runtime…"
    time.sleep(0.7)
    assert _look(session, world, runtime, environment_id)["info"]["location"] == f"env-{environment_id}"
    assert runtime.calls == 1


def test_a_deleted_environment_is_not_asked_about(
    session: Session, world: World, environment_id: int
) -> None:
    runtime = CountingRuntime(ports.runtime())
    _phase(session, environment_id, Phase.deleted)
    view = _look(session, world, runtime, environment_id)
    assert runtime.calls == 0
    assert "deleted" in view["info"]["note"]


def test_the_cache_answers_only_those_who_may_read(
    session: Session, world: World, environment_id: int
) -> None:
    runtime = CountingRuntime(ports.runtime())
    _look(session, world, runtime, environment_id)
    with pytest.raises(NotFound):
        inspection.environment_workloads(
            session=session, actor=world.outsider, runtime=runtime, environment_id=environment_id
        )
