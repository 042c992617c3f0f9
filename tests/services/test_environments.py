"""Environment use cases: intent recorded, committed, then queued; audited always."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from envhub.domain.phases import Phase
from envhub.domain.specs import EnvironmentKind, Trigger
from envhub.errors import (
    Conflict,
    EnvhubError,
    InvalidName,
    InvalidTransition,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from envhub.models import AuditEvent, Environment, JobRun, JobStatus, Project
from envhub.models.base import utcnow
from envhub.runtime.local import LocalRuntime
from envhub.services import jobruns
from envhub.services.environment_views import environment_summary
from envhub.services.environments import (
    create_environment,
    delete_environment,
    get_environment,
    latest_run,
    list_environments,
    redeploy_environment,
    suggest_environment_name,
)
from envhub.services.projects import create_project
from envhub.services.reconciliation import reconcile
from tests.support.db import audit_events, fetch, fetch_all, other_session
from tests.support.fakes import Enqueued, FakeQueue
from tests.support.world import World

CONVERGE = "envhub.jobs.environments.converge_environment"


@pytest.fixture
def project(session: Session, world: World) -> Project:
    return create_project(session=session, actor=world.owner, team_id=world.acme, name="shop", env={"A": "1"})


@pytest.fixture
def queue() -> FakeQueue:
    return FakeQueue()


def _pid(project: Project) -> int:
    assert project.id is not None
    return project.id


def _set_phase(session: Session, environment_id: int, phase: Phase) -> None:
    """What a finished job would have written (in its own session)."""
    db = session.get_bind()
    with other_session(db) as other:
        row = other.get(Environment, environment_id)
        assert row is not None
        row.phase = phase
        row.observed_generation = row.desired_generation
        for run in jobruns.active_runs(other, environment_id):
            run.status = JobStatus.succeeded
            other.add(run)
        other.add(row)
        other.commit()
    session.expire_all()  # the next request reads fresh rows


def test_create_commits_environment_run_and_audit_before_enqueueing(
    session: Session, world: World, project: Project, db: Engine, queue: FakeQueue
) -> None:
    seen_at_enqueue: list[tuple[Environment | None, JobRun | None, int]] = []

    def look(job: Enqueued) -> None:
        # Another connection sees everything already committed at this moment.
        environment_id, run_id = job.args
        with Session(db) as other:  # no settle(): observe the service without touching its session
            env = other.get(Environment, environment_id)
            run = other.get(JobRun, run_id)
            audits = len(
                other.exec(select(AuditEvent).where(AuditEvent.action == "environment.create")).all()
            )
        seen_at_enqueue.append((env, run, audits))

    queue.on_enqueue = look
    environment = create_environment(
        session=session,
        actor=world.member,
        queue=queue,
        project_id=_pid(project),
        name="pr-1",
        overrides={"env": {"B": "2"}, "ref": "feature"},
    )
    [(env, run, audits)] = seen_at_enqueue
    assert env is not None
    assert run is not None
    assert audits == 1
    assert (env.name, env.phase, env.desired_state, env.desired_generation) == (
        "pr-1",
        Phase.pending,
        "present",
        1,
    )
    assert env.kind is EnvironmentKind.development
    assert env.spec["env"] == {"A": "1", "B": "2"}
    assert env.spec["ref"] == "feature"
    assert env.created_by_id == world.member.user_id
    assert (run.kind, run.status, run.generation, run.environment_id) == (
        "provision",
        JobStatus.queued,
        1,
        environment.id,
    )
    assert [step["key"] for step in run.steps] == ["workspace", "start", "health", "publish"]

    [job] = queue.jobs
    assert job.function == CONVERGE
    assert job.args == (environment.id, run.id)
    assert job.job_id == f"envhub-jobrun-{run.id}"
    stored_run = fetch(db, JobRun, run.id or 0)
    assert stored_run is not None
    assert stored_run.rq_job_id == job.job_id
    assert stored_run.enqueued_at is not None

    [event] = audit_events(db, "environment.create")
    assert (event.outcome, event.target_id, event.target) == ("success", environment.id, "shop/pr-1")
    assert (event.actor_id, event.team_id) == (world.member.user_id, world.acme)
    assert event.details["job_run"] == run.id
    assert event.details["spec"]["env"] == {"A": "1", "B": "2"}


def test_create_generates_a_free_name(
    session: Session, world: World, project: Project, queue: FakeQueue
) -> None:
    suggested = suggest_environment_name(session=session, actor=world.viewer, project_id=_pid(project))
    assert re.fullmatch(r"dev-[a-z]+-[a-z]+", suggested)
    names = {
        create_environment(session=session, actor=world.member, queue=queue, project_id=_pid(project)).name
        for _ in range(5)
    }
    assert len(names) == 5
    assert all(re.fullmatch(r"dev-([a-z]+-[a-z]+|[0-9a-f]{8})", n) for n in names)


@pytest.mark.parametrize("name", ["PR-1", "a" * 64, "pr_1", "-pr", "pr-", "pr 1"])
def test_invalid_name(
    session: Session, world: World, project: Project, db: Engine, queue: FakeQueue, name: str
) -> None:
    with pytest.raises(InvalidName) as caught:
        create_environment(
            session=session, actor=world.member, queue=queue, project_id=_pid(project), name=name
        )
    assert caught.value.code == "invalid_name"
    assert fetch_all(db, Environment) == []
    assert fetch_all(db, JobRun) == []
    assert queue.jobs == []
    [event] = audit_events(db, "environment.create")
    assert (event.outcome, event.error_code, event.target) == ("failure", "invalid_name", name)
    assert event.team_id == world.acme


def test_duplicate_live_name_is_a_conflict_but_a_deleted_name_is_free(
    session: Session, world: World, project: Project, db: Engine, queue: FakeQueue
) -> None:
    first = create_environment(
        session=session, actor=world.member, queue=queue, project_id=_pid(project), name="pr-1"
    )
    with pytest.raises(Conflict) as caught:
        create_environment(
            session=session, actor=world.owner, queue=queue, project_id=_pid(project), name="pr-1"
        )
    assert caught.value.code == "conflict"
    assert len(fetch_all(db, Environment)) == 1
    assert len(queue.jobs) == 1

    assert first.id is not None
    _set_phase(session, first.id, Phase.deleted)
    again = create_environment(
        session=session, actor=world.member, queue=queue, project_id=_pid(project), name="pr-1"
    )
    assert again.id != first.id
    outcomes = [(e.outcome, e.error_code) for e in audit_events(db, "environment.create")]
    assert outcomes == [("success", None), ("failure", "conflict"), ("success", None)]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"kind": "production"}, "kind"),
        ({"overrides": {"health_path": "x"}}, "health_path"),
        ({"overrides": {"env": {"PORT": "1"}}}, "env"),
        ({"overrides": {"bogus": 1}}, "bogus"),
        ({"trigger": "cron"}, "trigger"),
    ],
)
def test_invalid_kind_or_spec(
    session: Session, world: World, project: Project, db: Engine, queue: FakeQueue, kwargs: dict, field: str
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        create_environment(
            session=session, actor=world.member, queue=queue, project_id=_pid(project), name="pr-1", **kwargs
        )
    assert caught.value.code == "validation_failed"
    assert field in (caught.value.details.get("field"), *caught.value.details)
    assert fetch_all(db, Environment) == []
    assert queue.jobs == []
    [event] = audit_events(db, "environment.create")
    assert event.error_code == "validation_failed"


def test_deployment_kind(session: Session, world: World, project: Project, queue: FakeQueue) -> None:
    env = create_environment(
        session=session,
        actor=world.member,
        queue=queue,
        project_id=_pid(project),
        name="staging",
        kind="deployment",
    )
    assert env.kind is EnvironmentKind.deployment


@pytest.mark.parametrize(
    ("given", "recorded"),
    [(None, Trigger.manual), ("agent", Trigger.agent), (Trigger.pull_request, Trigger.pull_request)],
)
def test_trigger_is_recorded_and_shown(
    session: Session, world: World, project: Project, db: Engine, queue: FakeQueue, given, recorded
) -> None:
    env = create_environment(
        session=session, actor=world.member, queue=queue, project_id=_pid(project), name="pr-1", trigger=given
    )
    assert fetch(db, Environment, env.id).trigger is recorded
    [event] = audit_events(db, "environment.create")
    assert event.details["trigger"] == recorded.value
    assert (
        environment_summary(session=session, actor=world.member, environment_id=env.id)["trigger"] == recorded
    )


@pytest.mark.parametrize(
    ("who", "error", "code"),
    [
        ("outsider", NotFound, "not_found"),
        ("nobody", NotFound, "not_found"),
        ("viewer", PermissionDenied, "forbidden"),
    ],
)
def test_create_authorization(
    session: Session,
    world: World,
    project: Project,
    db: Engine,
    queue: FakeQueue,
    who: str,
    error: type[EnvhubError],
    code: str,
) -> None:
    with pytest.raises(error) as caught:
        create_environment(
            session=session, actor=getattr(world, who), queue=queue, project_id=_pid(project), name="pr-1"
        )
    assert caught.value.code == code
    assert fetch_all(db, Environment) == []
    assert queue.jobs == []
    [event] = audit_events(db, "environment.create")
    assert (event.outcome, event.error_code, event.actor_id) == ("failure", code, getattr(world, who).user_id)


def test_create_in_a_missing_project(session: Session, world: World, db: Engine, queue: FakeQueue) -> None:
    with pytest.raises(NotFound) as caught:
        create_environment(session=session, actor=world.owner, queue=queue, project_id=4242, name="x")
    assert caught.value.details == {"project_id": 4242}
    [event] = audit_events(db, "environment.create")
    assert (event.outcome, event.error_code) == ("failure", "not_found")


def test_queue_down_keeps_the_rows_and_the_reconciler_dispatches_later(
    session: Session, world: World, project: Project, db: Engine, settings, tmp_path
) -> None:
    down = FakeQueue(down=True)
    env = create_environment(
        session=session, actor=world.member, queue=down, project_id=_pid(project), name="pr-1"
    )
    assert down.jobs == []
    assert env.id is not None
    [run] = fetch_all(db, JobRun)
    assert (run.status, run.enqueued_at, run.rq_job_id) == (JobStatus.queued, None, f"envhub-jobrun-{run.id}")
    stored = fetch(db, Environment, env.id)
    assert stored is not None
    assert stored.phase is Phase.pending
    assert [e.outcome for e in audit_events(db, "environment.create")] == ["success"]

    # The queue comes back. A reconciler tick soon after the commit leaves the run
    # alone (the service may be about to enqueue it) ...
    queue = FakeQueue()
    runtime = LocalRuntime(tmp_path / "envs")
    with other_session(db) as other:
        assert reconcile(session=other, queue=queue, runtime=runtime).requeued == []
    assert queue.jobs == []
    # ... and a later one dispatches it.
    with other_session(db) as other:
        stale = other.get(JobRun, run.id)
        assert stale is not None
        stale.created_at = utcnow() - timedelta(seconds=30)
        other.add(stale)
        other.commit()
    with other_session(db) as other:
        report = reconcile(session=other, queue=queue, runtime=runtime)
    assert report.requeued == [env.id]
    assert [(j.function, j.args, j.job_id) for j in queue.jobs] == [
        (CONVERGE, (env.id, run.id), run.rq_job_id)
    ]
    dispatched = fetch(db, JobRun, run.id or 0)
    assert dispatched is not None
    assert dispatched.enqueued_at is not None


def test_get_and_list(session: Session, world: World, project: Project, db: Engine, queue: FakeQueue) -> None:
    created = [
        create_environment(
            session=session, actor=world.member, queue=queue, project_id=_pid(project), name=f"e{i}"
        )
        for i in range(5)
    ]
    first = created[0]
    assert first.id is not None
    assert get_environment(session=session, actor=world.viewer, environment_id=first.id).name == "e0"
    with pytest.raises(NotFound):
        get_environment(session=session, actor=world.outsider, environment_id=first.id)
    with pytest.raises(NotFound) as missing:
        get_environment(session=session, actor=world.owner, environment_id=9999)
    assert missing.value.code == "not_found"

    page = list_environments(session=session, actor=world.viewer, project_id=_pid(project), limit=2)
    assert page.total == 5
    assert page.has_next
    assert [env.name for env, _ in page.items] == ["e4", "e3"]  # newest first
    assert {creator for _, creator in page.items} == {"max"}
    rest = list_environments(
        session=session, actor=world.viewer, project_id=_pid(project), offset=2, limit=10
    )
    assert [env.name for env, _ in rest.items] == ["e2", "e1", "e0"]

    _set_phase(session, first.id, Phase.deleted)
    assert list_environments(session=session, actor=world.viewer, project_id=_pid(project)).total == 4
    everything = list_environments(
        session=session, actor=world.viewer, project_id=_pid(project), include_deleted=True
    )
    assert everything.total == 5
    with pytest.raises(NotFound):
        list_environments(session=session, actor=world.outsider, project_id=_pid(project))

    assert first.id is not None
    run = latest_run(session=session, actor=world.viewer, environment_id=first.id)
    assert run is not None
    assert run.environment_id == first.id


def test_redeploy_bumps_the_generation_and_supersedes_the_old_run(
    session: Session, world: World, project: Project, db: Engine, queue: FakeQueue
) -> None:
    env = create_environment(
        session=session, actor=world.member, queue=queue, project_id=_pid(project), name="pr-1"
    )
    assert env.id is not None
    with pytest.raises(InvalidTransition) as early:
        redeploy_environment(session=session, actor=world.member, queue=queue, environment_id=env.id)
    assert early.value.code == "invalid_transition"

    _set_phase(session, env.id, Phase.ready)
    redeployed = redeploy_environment(session=session, actor=world.member, queue=queue, environment_id=env.id)
    assert (redeployed.phase, redeployed.desired_generation) == (Phase.updating, 2)
    runs = fetch_all(db, JobRun)
    assert [(r.kind, r.generation) for r in runs] == [("provision", 1), ("redeploy", 2)]
    assert runs[-1].status is JobStatus.queued
    assert queue.job_ids[-1] == f"envhub-jobrun-{runs[-1].id}"

    # Redeploying again while the first redeploy is still queued supersedes it.
    redeploy_environment(session=session, actor=world.owner, queue=queue, environment_id=env.id)
    runs = fetch_all(db, JobRun)
    assert [(r.generation, r.status) for r in runs[1:]] == [(2, JobStatus.abandoned), (3, JobStatus.queued)]
    events = audit_events(db, "environment.redeploy")
    assert [(e.outcome, e.error_code) for e in events] == [
        ("failure", "invalid_transition"),
        ("success", None),
        ("success", None),
    ]
    assert events[-1].details["generation"] == 3


def test_redeploy_of_a_failed_environment_provisions_again(
    session: Session, world: World, project: Project, db: Engine, queue: FakeQueue
) -> None:
    env = create_environment(
        session=session, actor=world.member, queue=queue, project_id=_pid(project), name="pr-1"
    )
    assert env.id is not None
    _set_phase(session, env.id, Phase.failed)
    assert redeploy_environment(
        session=session, actor=world.member, queue=queue, environment_id=env.id
    ).phase is (Phase.provisioning)
    with pytest.raises(PermissionDenied):
        redeploy_environment(session=session, actor=world.viewer, queue=queue, environment_id=env.id)


def test_delete(session: Session, world: World, project: Project, db: Engine, queue: FakeQueue) -> None:
    env = create_environment(
        session=session, actor=world.member, queue=queue, project_id=_pid(project), name="pr-1"
    )
    assert env.id is not None
    with pytest.raises(PermissionDenied):
        delete_environment(session=session, actor=world.viewer, queue=queue, environment_id=env.id)
    with pytest.raises(NotFound):
        delete_environment(session=session, actor=world.outsider, queue=queue, environment_id=env.id)

    deleted = delete_environment(session=session, actor=world.member, queue=queue, environment_id=env.id)
    assert (deleted.phase, deleted.desired_state, deleted.desired_generation) == (Phase.deleting, "absent", 2)
    runs = fetch_all(db, JobRun)
    assert [(r.kind, r.status) for r in runs] == [
        ("provision", JobStatus.abandoned),
        ("teardown", JobStatus.queued),
    ]
    assert [step["key"] for step in runs[-1].steps] == ["stop", "cleanup"]
    assert queue.job_ids[-1] == f"envhub-jobrun-{runs[-1].id}"

    # Asking twice is not an error and queues nothing new.
    delete_environment(session=session, actor=world.member, queue=queue, environment_id=env.id)
    assert len(fetch_all(db, JobRun)) == 2
    assert len(queue.jobs) == 2

    _set_phase(session, env.id, Phase.deleted)
    with pytest.raises(NotFound):
        delete_environment(session=session, actor=world.member, queue=queue, environment_id=env.id)
    events = [(e.outcome, e.error_code) for e in audit_events(db, "environment.delete")]
    assert events[0] == ("failure", "forbidden")
    assert events[1] == ("failure", "not_found")
    assert ("success", None) in events
    assert events[-1] == ("failure", "not_found")
