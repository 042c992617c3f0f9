"""A worker killed between any two steps of a release converges without a duplicate (issue 12 point 7).

Each step of a release is one commit. Here the process "dies" right after each
of them (the next call raises, as a killed worker would never make it), then
the reconciler's pass (``releases.drive`` and ``reconciliation.reconcile``)
picks the work up from the database alone. At the end every environment has
exactly one release of the commit, and production waits for its approval.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlmodel import Session, select

from envhub.domain.releases import ReleaseStatus, ReleaseTrigger, render_command_source
from envhub.jobs.environments import converge_environment
from envhub.models import Artifact, Environment, JobRun, JobStatus, Project, Release
from envhub.models.base import utcnow
from envhub.models.db import session_scope
from envhub.runtime.local import LocalRuntime
from envhub.services import jobruns, ports, releases
from envhub.services.reconciliation import reconcile
from tests.releases.test_flow import SETTINGS
from tests.support.fakes import FakeQueue
from tests.support.runtime import kill_environments
from tests.support.world import World

SHA = "3" * 40


class Killed(BaseException):
    """What the worker's death looks like to the code after the last commit (never caught as an error)."""


@pytest.fixture
def runtime(settings: object) -> Iterator[LocalRuntime]:
    built = ports.runtime()
    assert isinstance(built, LocalRuntime)
    yield built
    kill_environments(built)


@pytest.fixture
def deploying(session: Session, world: World, project: Project) -> Project:
    assert project.id is not None
    releases.configure_deployments(
        session=session, actor=world.owner, project_id=project.id, settings=SETTINGS
    )
    return project


def _render(queue: FakeQueue, artifact_id: int) -> str:
    with session_scope() as session:
        return releases.render_artifact(
            session=session, queue=queue, artifact_id=artifact_id, renderer=render_command_source
        )


def _drive(queue: FakeQueue) -> dict[str, int]:
    with session_scope() as session:
        return releases.drive(session=session, queue=queue, checks=releases.GateChecks())


def _die_once(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> None:
    real = getattr(owner, name)
    calls = {"n": 0}

    def dying(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 1:
            raise Killed(name)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, dying)


def _env(session: Session, project: Project, name: str) -> Environment:
    session.expire_all()
    return session.exec(
        select(Environment).where(Environment.project_id == project.id, Environment.name == name)
    ).one()


def test_killed_after_every_step_converges_to_one_release_per_environment(
    session: Session,
    world: World,
    deploying: Project,
    runtime: LocalRuntime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert deploying.id is not None
    queue = FakeQueue(down=True)  # 1. recorded, but the render job never reached the queue
    [made] = releases.create_release(
        session=session, actor=world.admin, queue=queue, project_id=deploying.id, commit=SHA,
        trigger=ReleaseTrigger.push,
    )  # fmt: skip
    queue.down = False
    assert _drive(queue)["renders_redriven"] == 1
    assert [job.function for job in queue.jobs] == [releases.RENDER_JOB]

    # 2. Killed after the render was recorded, before the release moved on.
    _die_once(monkeypatch, releases, "advance")
    with pytest.raises(Killed):
        _render(queue, made.artifact_id)
    session.refresh(made)
    assert made.status is ReleaseStatus.rendering
    # 3. The reconciler moves it on; killed after the deploy was recorded, before the job was queued.
    _die_once(monkeypatch, jobruns, "dispatch")
    with pytest.raises(Killed):
        _drive(queue)
    session.refresh(made)
    assert made.status is ReleaseStatus.deploying
    [run] = session.exec(select(JobRun)).all()
    assert run.status is JobStatus.queued
    run.created_at = utcnow() - timedelta(seconds=10)  # past the reconciler's grace for fresh runs
    session.add(run)
    session.commit()
    reconcile(session=session, queue=queue, runtime=runtime)
    assert queue.jobs[-1].function == jobruns.CONVERGE_JOB

    # 4. Killed after staging became ready, before the promotion to production.
    _die_once(monkeypatch, releases, "after_settle")
    with pytest.raises(Killed):
        converge_environment(*queue.jobs[-1].args)  # type: ignore[arg-type]
    session.refresh(made)
    assert made.status is ReleaseStatus.ready
    production = _env(session, deploying, "production")
    assert session.exec(select(Release).where(Release.environment_id == production.id)).all() == []
    _drive(queue)
    _drive(queue)  # and again: still one

    staging = _env(session, deploying, "staging")
    assert len(session.exec(select(Release).where(Release.environment_id == staging.id)).all()) == 1
    [promoted] = session.exec(select(Release).where(Release.environment_id == production.id)).all()
    assert (promoted.status, promoted.artifact_id) == (ReleaseStatus.waiting, made.artifact_id)
    assert len(session.exec(select(Artifact)).all()) == 1
    # Asking for the same commit again changes nothing either.
    again = releases.create_release(
        session=session, actor=world.admin, queue=queue, project_id=deploying.id, commit=SHA
    )
    assert [r.id for r in again] == [made.id]
