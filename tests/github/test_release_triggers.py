"""A merge to a deploy branch makes exactly one staging release (issue 12 point 4).

Deliveries go through the real route with GitHub's example payloads; the job's
work (apply_delivery) runs in-process on the real database.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlmodel import Session, select

from envhub.domain.releases import ReleaseStatus, ReleaseTrigger
from envhub.models import Artifact, Environment, GithubConnection, Project, Release, WebhookDelivery
from envhub.services import releases
from envhub.services.pull_requests import apply_delivery
from tests.github.conftest import Examples, GitHub, commit
from tests.support.fakes import FakeQueue
from tests.support.world import World

Deliver = Callable[[str, dict[str, Any]], str]
SETTINGS = {
    "source": {"kind": "command"},
    "branches": ["main"],
    "release_branches": ["release/*"],
}


@pytest.fixture
def queue() -> FakeQueue:
    return FakeQueue()


@pytest.fixture
def deploying(session: Session, world: World, project: Project) -> Project:
    assert project.id is not None
    releases.configure_deployments(
        session=session, actor=world.owner, project_id=project.id, settings=SETTINGS
    )
    return project


@pytest.fixture
def deliver(github: GitHub, session: Session, queue: FakeQueue, connection: GithubConnection) -> Deliver:
    def send(event: str, payload: dict[str, Any]) -> str:
        session.commit()
        answer = github.send(event, payload, delivery=payload.pop("_delivery", None))
        assert answer.status_code in (200, 202), answer.text
        if answer.status_code == 200:
            return str(answer.json().get("reason", answer.json()["status"]))
        session.expire_all()
        row = session.exec(
            select(WebhookDelivery).where(WebhookDelivery.delivery_id == answer.json()["delivery"])
        ).one()
        assert row.id is not None
        return apply_delivery(session=session, queue=queue, delivery_row=row.id)

    return send


def _releases(session: Session, project: Project, name: str) -> list[Release]:
    session.expire_all()
    environment = session.exec(
        select(Environment).where(Environment.project_id == project.id, Environment.name == name)
    ).one()
    return list(session.exec(select(Release).where(Release.environment_id == environment.id)))


def test_a_merge_to_main_makes_exactly_one_staging_release(
    deliver: Deliver, examples: Examples, session: Session, deploying: Project, queue: FakeQueue
) -> None:
    outcome = deliver("push", examples.push("main", commit(1)))
    assert "push to main: release #1" in outcome
    [made] = _releases(session, deploying, "staging")
    assert (made.trigger, made.status, made.triggered_by) == (
        ReleaseTrigger.push, ReleaseStatus.rendering, "github"
    )  # fmt: skip
    assert _releases(session, deploying, "production") == []  # production takes what staging ran
    assert [job.function for job in queue.jobs] == [releases.RENDER_JOB]

    # GitHub redelivers it (same delivery id): nothing happens twice.
    again = examples.push("main", commit(1))
    delivery = session.exec(select(WebhookDelivery)).one().delivery_id
    again["_delivery"] = delivery
    deliver("push", again)
    # A second delivery of the same commit (a push event and CI's call alike) finds the same release.
    deliver("push", examples.push("main", commit(1)))
    assert len(_releases(session, deploying, "staging")) == 1
    assert len(session.exec(select(Artifact)).all()) == 1
    assert len(queue.jobs) == 1


def test_only_deploy_branches_release(
    deliver: Deliver, examples: Examples, session: Session, deploying: Project
) -> None:
    assert "no branch environment" in deliver("push", examples.push("feature/x", commit(2)))
    assert _releases(session, deploying, "staging") == []
    assert "release #1" in deliver("push", examples.push("release/2.0", commit(3)))
    [made] = _releases(session, deploying, "staging")
    artifact = session.get(Artifact, made.artifact_id)
    assert artifact is not None
    assert (artifact.commit_sha, artifact.ref) == (commit(3), "release/2.0")
    # A deleted release branch releases nothing.
    gone = examples.push("release/2.0", "0" * 40)
    gone["deleted"] = True
    deliver("push", gone)
    assert len(_releases(session, deploying, "staging")) == 1


def test_a_project_that_releases_from_ci_ignores_pushes(
    deliver: Deliver, examples: Examples, session: Session, world: World, deploying: Project
) -> None:
    assert deploying.id is not None
    releases.configure_deployments(
        session=session,
        actor=world.owner,
        project_id=deploying.id,
        settings={**SETTINGS, "release_on": "api"},
    )
    assert "releases come from CI calls" in deliver("push", examples.push("main", commit(4)))
    assert _releases(session, deploying, "staging") == []
