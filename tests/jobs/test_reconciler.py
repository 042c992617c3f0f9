"""The reconciler, one tick at a time, against the real database and local runtime."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import timedelta

import psutil
import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session

from envhub.config import Settings
from envhub.domain.phases import Phase
from envhub.jobs.environments import converge_environment
from envhub.models import Environment, JobRun, JobStatus, Project
from envhub.models.base import utcnow
from envhub.runtime.local import LocalRuntime
from envhub.services import ports
from envhub.services.environments import create_environment
from envhub.services.reconciliation import ReconcileReport, reconcile
from tests.support.db import audit_events, fetch, fetch_all, other_session
from tests.support.fakes import FakeQueue
from tests.support.runtime import is_gone, kill_environments, process_tree, recorded_pid
from tests.support.waiting import wait_for
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


def tick(db: Engine, queue: FakeQueue, runtime: LocalRuntime) -> ReconcileReport:
    with other_session(db) as session:
        return reconcile(session=session, queue=queue, runtime=runtime)


def create(session: Session, world: World, project: Project, queue: FakeQueue, name: str = "pr-1") -> int:
    assert project.id is not None
    env = create_environment(
        session=session, actor=world.member, queue=queue, project_id=project.id, name=name
    )
    assert env.id is not None
    return env.id


def edit_run(db: Engine, run_id: int, **values: object) -> None:
    with other_session(db) as session:
        run = session.get(JobRun, run_id)
        assert run is not None
        for key, value in values.items():
            setattr(run, key, value)
        session.add(run)
        session.commit()


def edit_env(db: Engine, env_id: int, **values: object) -> None:
    with other_session(db) as session:
        env = session.get(Environment, env_id)
        assert env is not None
        for key, value in values.items():
            setattr(env, key, value)
        session.add(env)
        session.commit()


def long_ago() -> object:
    return utcnow() - timedelta(minutes=5)


def add_ready(
    session: Session, world: World, project: Project, db: Engine, queue: FakeQueue, count: int
) -> list[int]:
    """``count`` more environments, ready, their last run succeeded just now."""
    made = []
    for _ in range(count):
        env_id = create(session, world, project, queue, name=f"pr-{len(fetch_all(db, Environment)) + 1}")
        [run] = [r for r in fetch_all(db, JobRun) if r.environment_id == env_id]
        edit_run(db, run.id or 0, status=JobStatus.succeeded, finished_at=utcnow())
        edit_env(db, env_id, phase=Phase.ready, observed_generation=1)
        made.append(env_id)
    return made


@contextlib.contextmanager
def statements(db: Engine) -> Iterator[list[str]]:
    """The SQL statements sent meanwhile."""
    seen: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        seen.append(statement)

    event.listen(db, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(db, "before_cursor_execute", count)


def test_nothing_to_do(
    session: Session, world: World, project: Project, db: Engine, queue: FakeQueue, runtime: LocalRuntime
) -> None:
    create(session, world, project, queue)
    assert tick(db, queue, runtime) == ReconcileReport()
    assert len(queue.jobs) == 1


def test_a_queued_run_whose_job_was_lost_is_enqueued_again(
    session: Session, world: World, project: Project, db: Engine, queue: FakeQueue, runtime: LocalRuntime
) -> None:
    env_id = create(session, world, project, queue)
    [run] = fetch_all(db, JobRun)
    queue.lose_everything()  # Redis restarted without persistence
    edit_run(db, run.id or 0, enqueued_at=long_ago())
    report = tick(db, queue, runtime)
    assert report.requeued == [env_id]
    assert queue.job_ids == [run.rq_job_id, run.rq_job_id]
    # Now that the queue knows it again, the next tick leaves it alone.
    assert tick(db, queue, runtime).requeued == []


def test_a_run_waiting_for_its_backoff_is_enqueued_only_when_due(
    session: Session, world: World, project: Project, db: Engine, queue: FakeQueue, runtime: LocalRuntime
) -> None:
    env_id = create(session, world, project, queue)
    [run] = fetch_all(db, JobRun)
    queue.lose_everything()  # the job ran, said "not yet", and left the queue
    edit_run(db, run.id or 0, enqueued_at=long_ago(), retry_at=utcnow() + timedelta(minutes=5), attempts=1)
    assert tick(db, queue, runtime).requeued == []
    edit_run(db, run.id or 0, retry_at=utcnow() - timedelta(seconds=1))
    assert tick(db, queue, runtime).requeued == [env_id]


def test_a_running_run_whose_worker_died_is_re_driven(
    session: Session, world: World, project: Project, db: Engine, queue: FakeQueue, runtime: LocalRuntime
) -> None:
    env_id = create(session, world, project, queue)
    [run] = fetch_all(db, JobRun)
    steps = [dict(s, status="done") if s["key"] == "workspace" else dict(s) for s in run.steps]
    edit_run(db, run.id or 0, status=JobStatus.running, attempts=1, heartbeat_at=utcnow(), steps=steps)
    assert tick(db, queue, runtime).restarted == []  # heartbeat is fresh: its worker is alive

    edit_run(db, run.id or 0, heartbeat_at=long_ago())
    report = tick(db, queue, runtime)
    assert report.restarted == [env_id]
    old, new = fetch_all(db, JobRun)
    assert old.status is JobStatus.abandoned
    assert "worker stopped responding" in (old.error or "")
    assert (new.status, new.generation, new.attempts, new.kind) == (JobStatus.queued, 1, 1, "provision")
    assert new.steps == steps  # progress so far stays visible
    assert queue.job_ids[-1] == f"envhub-jobrun-{new.id}"


def test_a_lagging_environment_without_a_run_gets_one(
    session: Session, world: World, project: Project, db: Engine, queue: FakeQueue, runtime: LocalRuntime
) -> None:
    env_id = create(session, world, project, queue)
    [run] = fetch_all(db, JobRun)
    edit_run(db, run.id or 0, status=JobStatus.failed)  # e.g. a crash recorded nothing useful
    report = tick(db, queue, runtime)
    assert report.started == [env_id]
    runs = fetch_all(db, JobRun)
    assert (runs[-1].kind, runs[-1].status, runs[-1].generation) == ("provision", JobStatus.queued, 1)
    assert queue.job_ids[-1] == runs[-1].rq_job_id


def test_an_environment_to_delete_without_a_run_gets_a_teardown(
    session: Session, world: World, project: Project, db: Engine, queue: FakeQueue, runtime: LocalRuntime
) -> None:
    env_id = create(session, world, project, queue)
    [run] = fetch_all(db, JobRun)
    edit_run(db, run.id or 0, status=JobStatus.abandoned)
    edit_env(db, env_id, desired_state="absent", phase=Phase.deleting, desired_generation=2)
    assert tick(db, queue, runtime).started == [env_id]
    assert fetch_all(db, JobRun)[-1].kind == "teardown"


@pytest.mark.parametrize("phase", [Phase.failed, Phase.sleeping])
def test_failed_and_sleeping_environments_wait_for_a_person(
    session: Session,
    world: World,
    project: Project,
    db: Engine,
    queue: FakeQueue,
    runtime: LocalRuntime,
    phase: Phase,
) -> None:
    env_id = create(session, world, project, queue)
    [run] = fetch_all(db, JobRun)
    edit_run(db, run.id or 0, status=JobStatus.failed)
    edit_env(db, env_id, phase=phase)
    assert tick(db, queue, runtime) == ReconcileReport()


def test_a_ready_environment_whose_processes_vanished_is_started_again(
    session: Session, world: World, project: Project, db: Engine, queue: FakeQueue, runtime: LocalRuntime
) -> None:
    env_id = create(session, world, project, queue)
    assert converge_environment(*queue.jobs[-1].args) == "ready"  # type: ignore[arg-type]
    assert tick(db, queue, runtime) == ReconcileReport()  # healthy: nothing to do

    env_dir = runtime.workspace_path(env_id).parent
    tree = process_tree(recorded_pid(env_dir))
    for proc in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()  # behind envhub's back
    wait_for(lambda: all(is_gone(p) for p in tree), what="the killed processes to go")

    report = tick(db, queue, runtime)
    assert report.started == [env_id]
    env = fetch(db, Environment, env_id)
    assert env is not None
    assert (env.phase, env.desired_generation) == (Phase.provisioning, 2)
    [drift] = audit_events(db, "environment.drift_detected")
    assert (drift.target_id, drift.principal_type) == (env_id, "system")

    assert converge_environment(*queue.jobs[-1].args) == "ready"  # type: ignore[arg-type]
    assert recorded_pid(env_dir) != tree[0].pid
    assert runtime.status(env_id).state.value == "ready"
    # Started again after it ended without envhub stopping it: a restart, as a kubelet counts one.
    # Its supervisor was killed too, so nothing said how it ended: the reason is Unknown.
    [main] = runtime.inspect(env_id).pods[0].containers
    assert main.restarts == 1
    assert main.last_termination is not None
    assert (main.last_termination.reason, main.last_termination.exit_code) == ("Unknown", None)


def test_orphans_are_removed_and_live_environments_kept(
    session: Session, world: World, project: Project, db: Engine, queue: FakeQueue, runtime: LocalRuntime
) -> None:
    env_id = create(session, world, project, queue)
    live_dir = runtime.workspace_path(env_id)
    live_dir.mkdir(parents=True)
    orphan = runtime.workspace_path(env_id + 1000)
    orphan.mkdir(parents=True)
    (orphan / "left-behind.txt").write_text("x")
    (runtime.root / "not-an-environment").mkdir()

    report = tick(db, queue, runtime)
    assert report.orphans_removed == [env_id + 1000]
    assert not orphan.parent.exists()
    assert live_dir.exists()
    assert (runtime.root / "not-an-environment").exists()
    [event] = audit_events(db, "environment.orphan_removed")
    assert (event.target_id, event.principal_type) == (env_id + 1000, "system")


def test_a_deleted_environment_s_leftovers_are_orphans(
    session: Session, world: World, project: Project, db: Engine, queue: FakeQueue, runtime: LocalRuntime
) -> None:
    env_id = create(session, world, project, queue)
    [run] = fetch_all(db, JobRun)
    edit_run(db, run.id or 0, status=JobStatus.succeeded)
    edit_env(db, env_id, phase=Phase.deleted, desired_state="absent")
    runtime.workspace_path(env_id).mkdir(parents=True)
    assert tick(db, queue, runtime).orphans_removed == [env_id]
    assert runtime.managed_environments() == set()


def test_queue_down_stops_the_tick_quietly(
    session: Session, world: World, project: Project, db: Engine, runtime: LocalRuntime
) -> None:
    queue = FakeQueue(down=True)
    env_id = create(session, world, project, queue)
    [run] = fetch_all(db, JobRun)
    edit_run(db, run.id or 0, created_at=long_ago())
    assert tick(db, queue, runtime).requeued == []
    queue.down = False
    assert tick(db, queue, runtime).requeued == [env_id]


def test_a_tick_reads_the_database_a_fixed_number_of_times_however_many_environments(
    session: Session,
    world: World,
    project: Project,
    db: Engine,
    queue: FakeQueue,
    runtime: LocalRuntime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A watched runtime (the Kubernetes one): ready environments are judged by their recorded
    # condition and the time of their last apply, not by asking the runtime or a query each.
    monkeypatch.setattr(runtime, "pushes_status", True)

    def add(count: int) -> None:
        add_ready(session, world, project, db, queue, count)
        queued = create(session, world, project, queue, name=f"pr-{len(fetch_all(db, Environment)) + 1}")
        assert queued  # one still provisioning, its job on the queue

    def sent() -> int:
        with statements(db) as seen:
            assert tick(db, queue, runtime).started == []  # nothing drifted, nothing to do
        return len(seen)

    add(2)
    few = sent()
    add(10)
    assert sent() == few


def test_a_tick_that_repairs_drift_costs_the_same_whatever_else_is_live(
    session: Session,
    world: World,
    project: Project,
    db: Engine,
    queue: FakeQueue,
    runtime: LocalRuntime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Repairing commits, and a commit expires every row the session read: deciding and
    # acting in one loop cost a query for each environment after the first repair.
    monkeypatch.setattr(runtime, "pushes_status", True)

    def sent(drifted: list[int]) -> int:
        for env_id in drifted:  # the watch saw them vanish
            edit_env(db, env_id, condition="absent")
        with statements(db) as seen:
            assert sorted(tick(db, queue, runtime).started) == sorted(drifted)
        return len(seen)

    ready = add_ready(session, world, project, db, queue, 3)
    few = sent(ready[:2])
    ready += add_ready(session, world, project, db, queue, 12)
    assert sent(ready[-2:]) == few


def test_a_tick_with_nothing_to_do_reads_a_few_columns_not_whole_rows(
    session: Session,
    world: World,
    project: Project,
    db: Engine,
    queue: FakeQueue,
    runtime: LocalRuntime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A pass reads every live environment and run in flight; loading whole rows (specs,
    # steps) into the ORM cost seconds at 10,000 environments (bench/scale.py), for nothing.
    monkeypatch.setattr(runtime, "pushes_status", True)
    add_ready(session, world, project, db, queue, 1)
    create(session, world, project, queue, name="pr-2")  # in flight: its job is on the queue
    with statements(db) as seen:
        report = tick(db, queue, runtime)
    assert (report.started, report.requeued) == ([], [])
    assert not [statement for statement in seen if "environment.spec" in statement]
    assert not [statement for statement in seen if "job_run.steps" in statement]
