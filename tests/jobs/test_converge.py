"""The converge job, run in-process against the real local runtime and database."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from envhub.config import Settings, override_settings
from envhub.domain.phases import Phase
from envhub.jobs.environments import converge_environment
from envhub.models import Environment, JobRun, JobStatus, Project
from envhub.models.base import utcnow
from envhub.runtime.base import REMOVED, RuntimeState, RuntimeStatus
from envhub.runtime.local import LocalRuntime
from envhub.services import ports
from envhub.services.environments import create_environment, delete_environment, redeploy_environment
from envhub.services.observation import record_status, removal_ended
from tests.conftest import build_settings
from tests.support.db import audit_events, fetch, fetch_all, other_session
from tests.support.fakes import FakeQueue
from tests.support.runtime import endpoint_get, is_gone, kill_environments, process_tree, recorded_pid
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


def _create(session: Session, world: World, project: Project, queue: FakeQueue, **overrides: object) -> int:
    assert project.id is not None
    env = create_environment(
        session=session,
        actor=world.member,
        queue=queue,
        project_id=project.id,
        name="pr-1",
        overrides=overrides,
    )
    assert env.id is not None
    return env.id


def _run_job(queue: FakeQueue) -> str:
    job = queue.jobs[-1]
    assert job.function == "envhub.jobs.environments.converge_environment"
    return converge_environment(*job.args)  # type: ignore[arg-type]


def _env(db: Engine, environment_id: int) -> Environment:
    env = fetch(db, Environment, environment_id)
    assert env is not None
    return env


def test_provision_to_ready(
    session: Session, world: World, project: Project, db: Engine, queue: FakeQueue, runtime: LocalRuntime
) -> None:
    env_id = _create(session, world, project, queue)
    assert _run_job(queue) == "ready"

    env = _env(db, env_id)
    assert (env.phase, env.observed_generation, env.error_code) == (Phase.ready, 1, None)
    assert env.public_url == "http://pr-1.shop.acme.localhost:3000/"
    [run] = fetch_all(db, JobRun)
    assert (run.status, run.attempts, run.error) == (JobStatus.succeeded, 1, None)
    assert run.finished_at is not None
    assert [(s["key"], s["status"]) for s in run.steps] == [
        ("workspace", "done"),
        ("start", "done"),
        ("health", "done"),
        ("publish", "done"),
    ]
    endpoint = runtime.endpoint(env_id)
    assert endpoint is not None
    assert endpoint_get(endpoint, timeout=10).status_code == 200

    system = [(e.action, e.actor, e.principal_type) for e in audit_events(db) if e.principal_type == "system"]
    assert system == [
        ("environment.provisioning", "envhub", "system"),
        ("environment.ready", "envhub", "system"),
    ]

    # The same job delivered twice does nothing the second time.
    assert _run_job(queue) == "nothing to do"
    assert len(fetch_all(db, JobRun)) == 1


def test_redeploy_restarts_with_the_new_generation(
    session: Session, world: World, project: Project, db: Engine, queue: FakeQueue, runtime: LocalRuntime
) -> None:
    env_id = _create(session, world, project, queue)
    assert _run_job(queue) == "ready"
    first_pid = recorded_pid(runtime.workspace_path(env_id).parent)
    session.expire_all()
    redeploy_environment(session=session, actor=world.member, queue=queue, environment_id=env_id)
    assert _env(db, env_id).phase is Phase.updating
    assert _run_job(queue) == "ready"
    env = _env(db, env_id)
    assert (env.phase, env.observed_generation) == (Phase.ready, 2)
    assert recorded_pid(runtime.workspace_path(env_id).parent) != first_pid


def test_a_crashing_command_fails_with_its_code_and_audit(
    session: Session, world: World, project: Project, db: Engine, queue: FakeQueue, runtime: LocalRuntime
) -> None:
    env_id = _create(session, world, project, queue, command="echo missing dependency; exit 1")
    assert _run_job(queue) == "failed: process_exited"

    env = _env(db, env_id)
    assert (env.phase, env.error_code) == (Phase.failed, "process_exited")
    assert "read its logs" in env.message  # the hint travels with the failure
    [run] = fetch_all(db, JobRun)
    assert (run.status, run.error_code) == (JobStatus.failed, "process_exited")
    assert {s["key"]: s["status"] for s in run.steps}["health"] == "failed"
    [event] = audit_events(db, "environment.failed")
    assert (event.outcome, event.error_code, event.principal_type) == ("failure", "process_exited", "system")


def test_not_ready_is_retried_later_then_fails_when_attempts_are_spent(
    session: Session, world: World, project: Project, db: Engine, queue: FakeQueue, settings: Settings
) -> None:
    quick = build_settings(**{**settings.model_dump(), "health_timeout": 0.5, "job_max_attempts": 2})
    with override_settings(quick):
        ports.reset()
        runtime = ports.runtime()
        try:
            env_id = _create(session, world, project, queue, command="exec sleep 600")
            before = utcnow()
            assert _run_job(queue).startswith("retrying: not healthy")
            [run] = fetch_all(db, JobRun)
            assert (run.status, run.attempts, run.error_code) == (JobStatus.queued, 1, "not_ready")
            assert run.retry_at is not None
            assert run.retry_at >= before + timedelta(seconds=1)
            env = _env(db, env_id)
            assert env.phase is Phase.provisioning
            assert "retrying in" in env.message

            # The second (last) attempt finds the same process, not a new one.
            pid = recorded_pid(runtime.workspace_path(env_id).parent)  # type: ignore[attr-defined]
            assert _run_job(queue) == "failed: not_ready"
            assert recorded_pid(runtime.workspace_path(env_id).parent) == pid  # type: ignore[attr-defined]
            [run] = fetch_all(db, JobRun)
            assert (run.status, run.attempts) == (JobStatus.failed, 2)
            assert _env(db, env_id).phase is Phase.failed
        finally:
            kill_environments(runtime)  # type: ignore[arg-type]
            ports.reset()


def test_delete_tears_down_and_a_superseded_run_does_nothing(
    session: Session, world: World, project: Project, db: Engine, queue: FakeQueue, runtime: LocalRuntime
) -> None:
    env_id = _create(session, world, project, queue)
    provision = queue.jobs[-1]
    assert _run_job(queue) == "ready"
    env_dir = runtime.workspace_path(env_id).parent
    tree = process_tree(recorded_pid(env_dir))

    session.expire_all()
    delete_environment(session=session, actor=world.member, queue=queue, environment_id=env_id)
    assert _run_job(queue) == "deleted"
    env = _env(db, env_id)
    assert (env.phase, env.public_url) == (Phase.deleted, None)
    assert env.deleted_at is not None
    assert not env_dir.exists()
    assert all(is_gone(p) for p in tree)
    assert [(e.action, e.actor) for e in audit_events(db)][-2:] == [
        ("environment.delete", "max"),
        ("environment.deleted", "envhub"),
    ]
    # A late delivery of the old provision job must not resurrect it.
    assert converge_environment(*provision.args) == "nothing to do"  # type: ignore[arg-type]
    assert _env(db, env_id).phase is Phase.deleted
    assert not env_dir.exists()


def test_delete_before_the_first_run_supersedes_it(
    session: Session, world: World, project: Project, db: Engine, queue: FakeQueue, runtime: LocalRuntime
) -> None:
    env_id = _create(session, world, project, queue)
    provision = queue.jobs[-1]
    delete_environment(session=session, actor=world.member, queue=queue, environment_id=env_id)
    assert converge_environment(*provision.args) == "nothing to do"  # type: ignore[arg-type]
    assert not runtime.workspace_path(env_id).exists()
    assert _run_job(queue) == "deleted"
    assert _env(db, env_id).phase is Phase.deleted
    runs = fetch_all(db, JobRun)
    assert [(r.kind, r.status) for r in runs] == [
        ("provision", JobStatus.abandoned),
        ("teardown", JobStatus.succeeded),
    ]


def _waiting_teardown(
    session: Session, world: World, project: Project, db: Engine, queue: FakeQueue
) -> JobRun:
    """A teardown run as a job leaves it when the runtime finishes the removal on its own."""
    env_id = _create(session, world, project, queue)
    assert _run_job(queue) == "ready"
    session.expire_all()
    delete_environment(session=session, actor=world.member, queue=queue, environment_id=env_id)
    run = fetch_all(db, JobRun)[-1]
    assert run.kind == "teardown"
    with other_session(db) as other:
        row = other.get(JobRun, run.id)
        assert row is not None
        row.status, row.attempts, row.retry_at = JobStatus.queued, 1, utcnow() + timedelta(minutes=5)
        other.add(row)
        other.commit()
    queue.lose_everything()  # the job that said "still removing" has left the queue
    return run


def test_the_end_of_a_removal_wakes_its_waiting_teardown_once(
    session: Session, world: World, project: Project, db: Engine, queue: FakeQueue, runtime: LocalRuntime
) -> None:
    run = _waiting_teardown(session, world, project, db, queue)
    before = len(queue.jobs)
    with other_session(db) as other:
        assert removal_ended(session=other, queue=queue, environment_id=run.environment_id or 0)
    woken = fetch(db, JobRun, run.id or 0)
    assert woken is not None
    assert (woken.status, woken.retry_at) == (JobStatus.queued, None)
    assert [job.job_id for job in queue.jobs[before:]] == [run.rq_job_id]
    # Every worker's watch reports the same end: the others find nothing to wake.
    with other_session(db) as other:
        assert not removal_ended(session=other, queue=queue, environment_id=run.environment_id or 0)
    assert len(queue.jobs) == before + 1
    assert _run_job(queue) == "deleted"  # the woken job finds nothing left and finishes the teardown


def test_a_removal_report_touches_nothing_but_a_waiting_teardown(
    session: Session, world: World, project: Project, db: Engine, queue: FakeQueue, runtime: LocalRuntime
) -> None:
    env_id = _create(session, world, project, queue)
    removed = RuntimeStatus(RuntimeState.absent, "namespace gone", details={REMOVED: "namespace"})
    # A live environment (its namespace deleted behind envhub's back is the status watch's
    # "absent", not this): no run, no condition.
    with other_session(db) as other:
        assert not removal_ended(session=other, queue=queue, environment_id=env_id)
        record_status(session=other, environment_id=env_id, status=removed)
    assert len(queue.jobs) == 1
    assert _env(db, env_id).condition is None
    # A teardown that is running sees the end itself.
    session.expire_all()
    delete_environment(session=session, actor=world.member, queue=queue, environment_id=env_id)
    run = fetch_all(db, JobRun)[-1]
    edit = {"status": JobStatus.running, "retry_at": None}
    with other_session(db) as other:
        row = other.get(JobRun, run.id)
        assert row is not None
        for key, value in edit.items():
            setattr(row, key, value)
        other.add(row)
        other.commit()
        assert not removal_ended(session=other, queue=queue, environment_id=env_id)
    assert len(queue.jobs) == 2
