"""Idle sleep, wake and TTL through the services, the converge job and the reconciler.

Against the real database and the local runtime (real processes): a sleeping
environment's processes are gone and its workspace is kept; waking starts it
from that workspace; a worker killed half-way through either converges; the
reconciler puts idle environments to sleep and deletes expired ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from envhub.config import Settings
from envhub.domain.phases import Phase
from envhub.domain.principals import SYSTEM
from envhub.domain.specs import EnvironmentKind, Trigger
from envhub.errors import EnvironmentWaking, InvalidTransition, PermissionDenied
from envhub.jobs.environments import converge_environment
from envhub.models import Environment, EnvironmentSpan, JobRun, JobStatus, Project
from envhub.models.base import utcnow
from envhub.runtime.base import RuntimeState
from envhub.runtime.local import LocalRuntime
from envhub.services import convergence, idleness, ports, reconciliation, sleeping
from envhub.services.commands import run_command
from envhub.services.environments import create_environment, redeploy_environment
from envhub.services.reconciliation import reconcile
from tests.support.db import audit_events, fetch, fetch_all, other_session
from tests.support.fakes import FakeQueue
from tests.support.runtime import kill_environments
from tests.support.world import World


@pytest.fixture
def runtime(settings: Settings) -> Iterator[LocalRuntime]:
    built = ports.runtime()
    assert isinstance(built, LocalRuntime)
    yield built
    kill_environments(built)


@pytest.fixture
def queue() -> FakeQueue:
    return FakeQueue()


def create(
    session: Session, world: World, project: Project, queue: FakeQueue, name: str, **extra: object
) -> int:
    assert project.id is not None
    env = create_environment(
        session=session, actor=world.member, queue=queue, project_id=project.id, name=name, **extra
    )
    assert env.id is not None
    return env.id


def run_last_job(queue: FakeQueue) -> str:
    return converge_environment(*queue.jobs[-1].args)  # type: ignore[arg-type]


def edit(db: Engine, model: type[Environment] | type[JobRun], row_id: int, **values: object) -> None:
    with other_session(db) as session:
        row = session.get(model, row_id)
        assert row is not None
        for key, value in values.items():
            setattr(row, key, value)
        session.add(row)
        session.commit()


def env_row(db: Engine, env_id: int) -> Environment:
    row = fetch(db, Environment, env_id)
    assert row is not None
    return row


def runs_of(db: Engine, env_id: int) -> list[JobRun]:
    return fetch_all(db, JobRun, JobRun.environment_id == env_id)


def make_ready(db: Engine, env_id: int) -> None:
    """Ready as far as the database knows (no processes): for decisions that need none."""
    for run in runs_of(db, env_id):
        edit(db, JobRun, run.id or 0, status=JobStatus.succeeded, finished_at=utcnow())
    edit(db, Environment, env_id, phase=Phase.ready, observed_generation=1)


def test_an_environment_sleeps_keeping_its_workspace_and_wakes_from_it(
    session: Session, world: World, project: Project, db: Engine, queue: FakeQueue, runtime: LocalRuntime
) -> None:
    env_id = create(session, world, project, queue, "dozy")
    assert run_last_job(queue) == "ready"
    (runtime.workspace_path(env_id) / "notes.txt").write_text("written before sleep")

    sleeping.sleep_environment(session=session, actor=world.member, queue=queue, environment_id=env_id)
    assert env_row(db, env_id).message == "Going to sleep"  # still ready until its processes stop
    assert runs_of(db, env_id)[-1].kind == "sleep"
    assert run_last_job(queue) == "asleep"
    asleep = env_row(db, env_id)
    assert asleep.phase is Phase.sleeping
    assert runtime.status(env_id).state is RuntimeState.absent
    assert (runtime.workspace_path(env_id) / "notes.txt").read_text() == "written before sleep"
    # Asking again changes nothing and records nothing.
    sleeping.sleep_environment(session=session, actor=world.member, queue=queue, environment_id=env_id)
    assert len(queue.jobs) == 2

    sleeping.wake_environment(session=session, actor=world.member, queue=queue, environment_id=env_id)
    assert runs_of(db, env_id)[-1].kind == "wake"
    assert run_last_job(queue) == "ready"
    awake = env_row(db, env_id)
    assert (awake.phase, awake.public_url) == (Phase.ready, asleep.public_url)
    assert runtime.status(env_id).state is RuntimeState.ready
    assert (runtime.workspace_path(env_id) / "notes.txt").read_text() == "written before sleep"

    # Idle for longer than its project allows: the reconciler's pass puts it back to sleep.
    three_hours_ago = utcnow() - timedelta(hours=3)
    edit(db, Environment, env_id, created_at=three_hours_ago, last_active_at=three_hours_ago)
    reconciliation._last_idle_check.clear()  # due now, whatever another test's pass did
    with other_session(db) as other:
        assert reconcile(session=other, queue=queue, runtime=runtime).slept == [env_id]
    assert run_last_job(queue) == "asleep"
    # A redeploy (a pull request pushed to while it sleeps) wakes it with the new deploy.
    redeploy_environment(session=session, actor=world.member, queue=queue, environment_id=env_id)
    assert env_row(db, env_id).phase is Phase.provisioning
    assert run_last_job(queue) == "ready"
    assert runtime.status(env_id).state is RuntimeState.ready

    phases = [(e.action, e.principal_type) for e in audit_events(db) if e.target_id == env_id]
    assert ("environment.sleep", "user") in phases
    assert ("environment.sleeping", "system") in phases  # the phase change, as every one is
    assert ("environment.wake", "user") in phases
    changes = [
        e.details for e in audit_events(db) if e.action.startswith("environment.") and "to" in e.details
    ]
    assert {"from": "ready", "to": "sleeping"} in [{k: c[k] for k in ("from", "to")} for c in changes]
    assert {"from": "sleeping", "to": "provisioning"} in [{k: c[k] for k in ("from", "to")} for c in changes]
    # Every one of those phase changes, by the jobs or the services, opened and closed a usage span.
    with other_session(db) as other:
        spans = other.exec(
            select(EnvironmentSpan)
            .where(EnvironmentSpan.environment_id == env_id)
            .order_by(col(EnvironmentSpan.id))
        ).all()
    assert [span.state.value for span in spans] == ["running", "asleep", "running", "asleep", "running"]
    assert all(span.ended_at is not None for span in spans[:-1])
    assert spans[-1].ended_at is None


def test_a_worker_killed_mid_sleep_or_mid_wake_converges(
    session: Session, world: World, project: Project, db: Engine, queue: FakeQueue, runtime: LocalRuntime
) -> None:
    env_id = create(session, world, project, queue, "killed")
    assert run_last_job(queue) == "ready"
    long_ago = utcnow() - timedelta(minutes=5)

    # Killed mid-sleep: the run was claimed (running), its heartbeat stopped.
    sleeping.sleep_environment(session=session, actor=world.member, queue=queue, environment_id=env_id)
    [sleep_run] = [r for r in runs_of(db, env_id) if r.kind == "sleep"]
    edit(db, JobRun, sleep_run.id or 0, status=JobStatus.running, attempts=1, heartbeat_at=long_ago)
    with other_session(db) as other:
        assert reconcile(session=other, queue=queue, runtime=runtime).restarted == [env_id]
    assert runs_of(db, env_id)[-1].kind == "sleep"
    assert run_last_job(queue) == "asleep"
    assert env_row(db, env_id).phase is Phase.sleeping

    # Killed mid-wake: the phase moved to provisioning, then nothing.
    sleeping.wake_environment(session=session, actor=world.member, queue=queue, environment_id=env_id)
    wake_run = runs_of(db, env_id)[-1]
    with other_session(db) as other:
        assert convergence.begin_run(other, environment_id=env_id, run_id=wake_run.id or 0) is not None
    assert env_row(db, env_id).phase is Phase.provisioning
    edit(db, JobRun, wake_run.id or 0, heartbeat_at=long_ago)
    with other_session(db) as other:
        report = reconcile(session=other, queue=queue, runtime=runtime)
    assert report.restarted == [env_id]
    assert runs_of(db, env_id)[-1].kind == "wake"
    assert run_last_job(queue) == "ready"
    assert env_row(db, env_id).phase is Phase.ready
    assert runtime.status(env_id).state is RuntimeState.ready


def test_the_reconciler_puts_idle_environments_to_sleep_and_deletes_expired_ones(
    session: Session, world: World, project: Project, db: Engine, queue: FakeQueue, runtime: LocalRuntime
) -> None:
    edit_project = {"sleep_after_minutes": 30, "ttl_hours": 24}
    with other_session(db) as other:
        row = other.get(Project, project.id)
        assert row is not None
        for key, value in edit_project.items():
            setattr(row, key, value)
        other.add(row)
        other.commit()
    ids = {
        name: create(session, world, project, queue, name, **extra)
        for name, extra in {
            "idle": {},
            "fresh": {},
            "pinned": {},
            "old": {},
            "old-pr": {"trigger": Trigger.pull_request},
            "busy": {},
            "staging": {"kind": EnvironmentKind.deployment},
        }.items()
    }
    for name, env_id in ids.items():
        if name != "busy":
            make_ready(db, env_id)
    edit(db, Environment, ids["busy"], phase=Phase.ready)  # its first run still in flight
    hour = timedelta(hours=1)
    edit(db, Environment, ids["idle"], created_at=utcnow() - 2 * hour, last_active_at=utcnow() - hour)
    edit(db, Environment, ids["fresh"], last_active_at=utcnow())
    edit(db, Environment, ids["pinned"], last_active_at=utcnow() - 30 * hour, pinned=True)
    for name in ("old", "old-pr", "busy", "staging"):
        edit(db, Environment, ids[name], created_at=utcnow() - 30 * hour)

    busy = {ids["busy"]: object()}  # what the reconciler passes: environments with a run in flight
    with other_session(db) as other:
        report = idleness.drive(session=other, queue=queue, now=utcnow(), busy=busy.keys())
    assert report.checked == 5  # neither the pinned nor the deployment environment is even read
    assert report.expired == [ids["old"]]
    assert sorted(report.slept) == sorted([ids["idle"], ids["old-pr"]])  # a PR's follows its PR, but sleeps
    assert runs_of(db, ids["idle"])[-1].kind == "sleep"
    assert env_row(db, ids["old"]).phase is Phase.deleting
    assert runs_of(db, ids["old"])[-1].kind == "teardown"
    [expired] = audit_events(db, "environment.expired")
    assert (expired.target_id, expired.principal_type, expired.details["ttl_hours"]) == (
        ids["old"],
        "system",
        24,
    )
    [idle] = [e for e in audit_events(db, "environment.sleep") if e.target_id == ids["idle"]]
    assert (idle.principal_type, idle.details["reason"]) == ("system", "idle")
    for name in ("fresh", "pinned", "busy", "staging"):
        assert [r.kind for r in runs_of(db, ids[name])] == ["provision"], name
    # The next pass sees the sleep and the teardown on their way (runs in flight) and starts nothing more.
    in_flight = {r.environment_id for r in fetch_all(db, JobRun) if r.status is JobStatus.queued}
    with other_session(db) as other:
        again = idleness.drive(session=other, queue=queue, now=utcnow(), busy=in_flight)
    assert (again.slept, again.expired) == ([], [])


def test_a_command_on_a_sleeping_environment_wakes_it_and_says_so(
    session: Session, world: World, project: Project, db: Engine, queue: FakeQueue, runtime: LocalRuntime
) -> None:
    env_id = create(session, world, project, queue, "asleep")
    make_ready(db, env_id)
    edit(db, Environment, env_id, phase=Phase.sleeping)
    for _ in range(2):
        with pytest.raises(EnvironmentWaking) as caught:
            run_command(
                session=session,
                actor=world.member,
                runtime=runtime,
                environment_id=env_id,
                command=["true"],
                timeout=5,
                cap=100,
            )
        assert caught.value.retryable
        assert caught.value.status == 503
    assert [r.kind for r in runs_of(db, env_id)] == ["provision", "wake"]  # woken once
    [woken] = audit_events(db, "environment.wake")
    assert (woken.principal_type, woken.details["reason"]) == ("user", "command")
    assert [e.error_code for e in audit_events(db, "environment.exec")] == ["environment_waking"] * 2


def test_what_sleep_wake_and_pin_refuse_and_what_they_allow(
    session: Session, world: World, project: Project, db: Engine, queue: FakeQueue
) -> None:
    env_id = create(session, world, project, queue, "rules")
    with pytest.raises(InvalidTransition):  # still provisioning
        sleeping.sleep_environment(session=session, actor=world.member, queue=queue, environment_id=env_id)
    make_ready(db, env_id)
    with pytest.raises(PermissionDenied):
        sleeping.sleep_environment(session=session, actor=world.viewer, queue=queue, environment_id=env_id)
    staging = create(session, world, project, queue, "staging", kind=EnvironmentKind.deployment)
    make_ready(db, staging)
    with pytest.raises(InvalidTransition, match="deployment environment"):
        sleeping.sleep_environment(session=session, actor=SYSTEM, queue=queue, environment_id=staging)
    # Waking something awake is no error and records nothing.
    sleeping.wake_environment(session=session, actor=world.member, queue=queue, environment_id=env_id)
    assert audit_events(db, "environment.wake") == []

    sleeping.pin_environment(session=session, actor=world.member, environment_id=env_id)
    assert env_row(db, env_id).pinned
    sleeping.pin_environment(session=session, actor=world.member, environment_id=env_id)  # again: no record
    sleeping.pin_environment(session=session, actor=world.member, environment_id=env_id, pinned=False)
    unpinned = env_row(db, env_id)
    assert not unpinned.pinned
    assert unpinned.last_active_at is not None
    assert [e.action for e in audit_events(db) if e.action.endswith("pin")] == [
        "environment.pin",
        "environment.unpin",
    ]
    with pytest.raises(PermissionDenied):
        sleeping.pin_environment(session=session, actor=world.viewer, environment_id=env_id)
