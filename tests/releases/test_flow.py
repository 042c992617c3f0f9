"""A release's whole life on the embedded runtime: merge, staging, approval, production, rollback.

The jobs run in-process against the real local runtime and database (the
render job and the convergence job are called as a worker would call them).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlmodel import Session, select

from envhub.domain.phases import Phase
from envhub.domain.releases import ReleaseStatus, ReleaseTrigger
from envhub.domain.specs import EnvironmentKind
from envhub.errors import InvalidTransition, PermissionDenied, ValidationFailed
from envhub.jobs.environments import converge_environment
from envhub.jobs.releases import render_artifact
from envhub.models import Environment, JobRun, Project, Release
from envhub.queue.base import JobQueue
from envhub.runtime.local import LocalRuntime
from envhub.services import ports, releases
from envhub.services.environments import delete_environment
from envhub.services.projects import delete_project, update_project
from envhub.services.release_views import release_detail
from tests.support.runtime import kill_environments
from tests.support.world import World

SHA1 = "1" * 40
SHA2 = "2" * 40
SETTINGS = {
    "source": {"kind": "command"},
    "environments": [
        {"name": "staging", "overrides": {"env": {"STAGE": "staging"}}},
        {
            "name": "production",
            "overrides": {"env": {"STAGE": "production"}},
            "promotion": {"promote_from": "staging", "approvals": 1, "approver_role": "admin"},
        },
    ],
}


@pytest.fixture
def runtime(settings: object) -> Iterator[LocalRuntime]:
    built = ports.runtime()
    assert isinstance(built, LocalRuntime)
    yield built
    kill_environments(built)


@pytest.fixture
def queue(settings: object) -> JobQueue:
    return ports.queue()


@pytest.fixture
def deploying(session: Session, world: World, project: Project) -> Project:
    assert project.id is not None
    update_project(
        session=session,
        actor=world.owner,
        project_id=project.id,
        changes={"command": "echo $STAGE; python3 -m http.server $PORT"},
    )
    releases.configure_deployments(
        session=session, actor=world.owner, project_id=project.id, settings=SETTINGS
    )
    return project


def _env(session: Session, project: Project, name: str) -> Environment:
    session.expire_all()
    return session.exec(
        select(Environment).where(Environment.project_id == project.id, Environment.name == name)
    ).one()


def _converge(session: Session, environment: Environment) -> str:
    run = session.exec(
        select(JobRun).where(JobRun.environment_id == environment.id).order_by(JobRun.id.desc())
    ).first()  # type: ignore[union-attr]
    assert run is not None
    return converge_environment(environment.id or 0, run.id or 0)


def test_configuring_creates_the_environments_and_nothing_runs_before_a_release(
    session: Session, deploying: Project
) -> None:
    staging, production = _env(session, deploying, "staging"), _env(session, deploying, "production")
    for env in (staging, production):
        assert (env.kind, env.phase, env.desired_generation) == (EnvironmentKind.deployment, Phase.pending, 0)
        assert env.message == "No release yet"
    assert session.exec(select(JobRun)).all() == []


def test_merge_to_staging_then_approval_to_production_carries_the_same_artifact(
    session: Session, world: World, deploying: Project, queue: JobQueue, runtime: LocalRuntime
) -> None:
    assert deploying.id is not None
    [release] = releases.create_release(
        session=session, actor=world.admin, queue=queue, project_id=deploying.id, commit=SHA1, ref="main",
        trigger=ReleaseTrigger.push,
    )  # fmt: skip
    # The same trigger again: the same release, not a second one.
    again = releases.create_release(
        session=session, actor=world.member, queue=queue, project_id=deploying.id, commit=SHA1, ref="main"
    )
    assert [r.id for r in again] == [release.id]
    assert release.status is ReleaseStatus.rendering
    assert render_artifact(release.artifact_id).startswith("rendered")
    session.refresh(release)
    assert release.status is ReleaseStatus.deploying
    staging = _env(session, deploying, "staging")
    assert staging.phase is Phase.provisioning
    assert _converge(session, staging) == "ready"
    session.refresh(release)
    assert release.status is ReleaseStatus.ready, release.message

    # Staging being ready promoted it: production waits for one approval.
    production = _env(session, deploying, "production")
    promoted = session.exec(select(Release).where(Release.environment_id == production.id)).one()
    assert (promoted.trigger, promoted.status, promoted.artifact_id) == (
        ReleaseTrigger.promotion, ReleaseStatus.waiting, release.artifact_id,
    )  # fmt: skip
    assert promoted.gates == [
        {"gate": "approvals", "passed": False, "reason": "0 of 1 approval(s) from a team admin or above"}
    ]
    # Who triggered the merge cannot approve what it became; a member is below the approver role.
    promoted_id = promoted.id or 0
    notes = {
        who.name: release_detail(session=session, actor=who, release_id=promoted_id)["approve_note"]
        for who in (world.admin, world.member, world.owner)
    }
    assert notes == {
        "adam": "You triggered this release, so someone else approves it.",
        "max": "Approving takes a team admin or above.",
        "olivia": "",
    }
    with pytest.raises(PermissionDenied, match="someone else"):
        releases.approve_release(session=session, actor=world.admin, queue=queue, release_id=promoted_id)
    with pytest.raises(PermissionDenied, match="admin or above"):
        releases.approve_release(session=session, actor=world.member, queue=queue, release_id=promoted_id)
    releases.approve_release(session=session, actor=world.owner, queue=queue, release_id=promoted_id)
    session.refresh(promoted)
    assert promoted.status is ReleaseStatus.deploying
    assert _converge(session, _env(session, deploying, "production")) == "ready"
    session.refresh(promoted)
    assert promoted.status is ReleaseStatus.ready
    production = _env(session, deploying, "production")
    assert production.spec["env"]["STAGE"] == "production"
    assert _env(session, deploying, "staging").spec["env"]["STAGE"] == "staging"


def test_rollback_is_a_new_release_of_the_old_content(
    session: Session, world: World, deploying: Project, queue: JobQueue, runtime: LocalRuntime
) -> None:
    assert deploying.id is not None
    staging = _env(session, deploying, "staging")
    numbers = []
    for sha in (SHA1, SHA2):
        [made] = releases.create_release(
            session=session, actor=world.member, queue=queue, project_id=deploying.id, commit=sha
        )
        render_artifact(made.artifact_id)
        assert _converge(session, staging) == "ready"
        numbers.append(made)
    first = numbers[0]
    with pytest.raises(PermissionDenied):
        releases.rollback(session=session, actor=world.member, queue=queue, release_id=first.id or 0)
    back = releases.rollback(session=session, actor=world.admin, queue=queue, release_id=first.id or 0)
    assert (back.number, back.trigger, back.artifact_id) == (3, ReleaseTrigger.rollback, first.artifact_id)
    assert back.status is ReleaseStatus.deploying
    assert _converge(session, _env(session, deploying, "staging")) == "ready"
    session.refresh(back)
    assert back.status is ReleaseStatus.ready
    assert releases.current_release(session, staging.id or 0).id == back.id  # type: ignore[union-attr]


def test_a_newer_release_supersedes_one_that_waits_and_a_waiting_one_can_be_cancelled(
    session: Session, world: World, deploying: Project, queue: JobQueue, runtime: LocalRuntime
) -> None:
    assert deploying.id is not None
    [first] = releases.create_release(
        session=session, actor=world.member, queue=queue, project_id=deploying.id, commit=SHA1
    )
    [second] = releases.create_release(
        session=session, actor=world.member, queue=queue, project_id=deploying.id, commit=SHA2
    )
    session.refresh(first)
    assert first.status is ReleaseStatus.superseded
    releases.cancel_release(session=session, actor=world.member, release_id=second.id or 0)
    session.refresh(second)
    assert second.status is ReleaseStatus.cancelled
    with pytest.raises(InvalidTransition):
        releases.cancel_release(session=session, actor=world.member, release_id=second.id or 0)
    # A cancelled release's render finishes without landing anything.
    render_artifact(second.artifact_id)
    assert _env(session, deploying, "staging").desired_generation == 0


def test_a_deployment_environment_takes_an_owner_and_its_name_to_delete(
    session: Session, world: World, deploying: Project, queue: JobQueue
) -> None:
    staging = _env(session, deploying, "staging")
    with pytest.raises(PermissionDenied, match="only a team owner"):
        delete_environment(
            session=session, actor=world.admin, queue=queue, environment_id=staging.id or 0, confirm="staging"
        )
    with pytest.raises(ValidationFailed, match="confirm with its name"):
        delete_environment(session=session, actor=world.owner, queue=queue, environment_id=staging.id or 0)
    deleted = delete_environment(
        session=session, actor=world.owner, queue=queue, environment_id=staging.id or 0, confirm="staging"
    )
    assert deleted.phase is Phase.deleting


def test_a_project_whose_deployment_environments_are_gone_can_be_deleted_with_its_releases(
    session: Session, world: World, deploying: Project, queue: JobQueue, runtime: LocalRuntime
) -> None:
    assert deploying.id is not None
    [release] = releases.create_release(
        session=session, actor=world.admin, queue=queue, project_id=deploying.id, commit=SHA1
    )
    render_artifact(release.artifact_id)
    assert _converge(session, _env(session, deploying, "staging")) == "ready"
    # Production's release points at staging's (its promotion source).
    assert session.exec(select(Release).where(Release.source_release_id == release.id)).one()
    for name in ("production", "staging"):
        environment = _env(session, deploying, name)
        delete_environment(
            session=session, actor=world.owner, queue=queue, environment_id=environment.id or 0, confirm=name
        )
        assert _converge(session, _env(session, deploying, name)) == "deleted"
    delete_project(session=session, actor=world.owner, project_id=deploying.id)
    session.expire_all()
    assert session.exec(select(Release)).all() == []
