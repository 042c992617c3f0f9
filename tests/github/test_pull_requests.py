"""Pull-request events drive development environments: issue 11 point 3.

Deliveries are GitHub's example payloads, recorded by the real webhook route;
the job's use case (``apply_delivery``) then runs here, on a queue fake (our
own port) so each test sees exactly which deployments were asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlmodel import Session, col, select

from envhub.domain.phases import Phase
from envhub.domain.specs import Trigger
from envhub.models import (
    AuditEvent,
    Environment,
    GithubConnection,
    JobRun,
    JobStatus,
    PullRequest,
    WebhookDelivery,
)
from envhub.services.environment_views import environment_summary
from envhub.services.projects import delete_project
from envhub.services.pull_requests import apply_delivery
from tests.github.conftest import Examples, GitHub, commit
from tests.support.fakes import FakeQueue
from tests.support.world import World

Deliver = Callable[..., str]


@pytest.fixture
def queue() -> FakeQueue:
    return FakeQueue()


@pytest.fixture
def deliver(github: GitHub, session: Session, queue: FakeQueue, connection: GithubConnection) -> Deliver:
    """Send a delivery through the route, then do what its job does; returns the job's outcome."""

    def send(event: str, payload: dict[str, Any]) -> str:
        session.commit()  # end the test's transaction: on SQLite it would hold the write lock
        answer = github.send(event, payload)
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


def deployments(queue: FakeQueue) -> int:
    return sum(job.function == "envhub.jobs.environments.converge_environment" for job in queue.jobs)


def environments(session: Session) -> list[Environment]:
    session.expire_all()
    return list(session.exec(select(Environment).order_by(col(Environment.id))))


def pull_request(session: Session, number: int = 2) -> PullRequest:
    session.expire_all()
    return session.exec(select(PullRequest).where(PullRequest.number == number)).one()


def test_an_opened_pull_request_gets_an_environment_at_its_head_commit(
    deliver: Deliver, examples: Examples, session: Session, queue: FakeQueue, world: World
) -> None:
    outcome = deliver("pull_request", examples.pull_request("opened", sha=commit(1)))

    [environment] = environments(session)
    assert environment.name == "pr-2"
    assert environment.trigger is Trigger.pull_request
    assert environment.spec["ref"] == commit(1)
    assert environment.created_by_id is None
    pr = pull_request(session)
    assert pr.environment_id == environment.id
    assert (pr.head_sha, pr.state, pr.skipped) == (commit(1), "open", "")
    assert pr.title == "Update the README with new information."
    assert "creating pr-2" in outcome
    assert [job.function for job in queue.jobs] == ["envhub.jobs.environments.converge_environment"]
    created = session.exec(select(AuditEvent).where(AuditEvent.action == "environment.create")).one()
    assert created.actor == "github"
    shown = environment_summary(session=session, actor=world.owner, environment_id=environment.id)
    assert shown["trigger"] == "pull_request"
    assert shown["source"] == "pull request #2: Update the README with new information., by Codertocat"
    assert shown["source_url"] == "https://github.com/Codertocat/Hello-World/pull/2"


def test_reopened_and_ready_for_review_create_one_too(
    deliver: Deliver, examples: Examples, session: Session
) -> None:
    deliver("pull_request", examples.pull_request("reopened", number=7, sha=commit(1)))
    deliver("pull_request", examples.pull_request("ready_for_review", number=8, sha=commit(2)))

    assert sorted(e.name for e in environments(session)) == ["pr-7", "pr-8"]


def test_a_draft_is_skipped_unless_the_project_opts_in(
    deliver: Deliver, examples: Examples, session: Session, connection: GithubConnection
) -> None:
    outcome = deliver("pull_request", examples.pull_request("opened", number=3, sha=commit(1), draft=True))

    assert environments(session) == []
    assert "a draft" in pull_request(session, 3).skipped
    assert "no environment" in outcome

    connection.drafts = True
    session.add(connection)
    session.commit()
    deliver("pull_request", examples.pull_request("opened", number=4, sha=commit(2), draft=True))
    assert [e.name for e in environments(session)] == ["pr-4"]


def test_a_draft_made_ready_gets_its_environment_and_back_to_draft_loses_it(
    deliver: Deliver, examples: Examples, session: Session
) -> None:
    deliver("pull_request", examples.pull_request("opened", sha=commit(1), draft=True))
    deliver("pull_request", examples.pull_request("ready_for_review", sha=commit(1)))
    [environment] = environments(session)
    assert environment.desired_state == "present"

    deliver("pull_request", examples.pull_request("converted_to_draft", sha=commit(1), draft=True))
    [environment] = environments(session)
    assert environment.desired_state == "absent"
    assert environment.phase is Phase.deleting


def label(name: str) -> dict[str, Any]:
    return {"id": 1, "name": name, "color": "ededed", "default": False}


def test_labels_opt_a_pull_request_out_or_in(
    deliver: Deliver, examples: Examples, session: Session, connection: GithubConnection
) -> None:
    deliver(
        "pull_request",
        examples.pull_request("opened", number=5, sha=commit(1), labels=[label("envhub:skip")]),
    )
    assert environments(session) == []
    assert pull_request(session, 5).skipped == "labelled envhub:skip"

    deliver("pull_request", examples.pull_request("unlabeled", number=5, sha=commit(1), labels=[]))
    assert [e.name for e in environments(session)] == ["pr-5"]

    connection.opt_in_label = "preview"
    session.add(connection)
    session.commit()
    deliver("pull_request", examples.pull_request("opened", number=6, sha=commit(2), labels=[]))
    assert pull_request(session, 6).skipped == "not labelled preview"
    deliver(
        "pull_request", examples.pull_request("labeled", number=6, sha=commit(2), labels=[label("preview")])
    )
    assert sorted(e.name for e in environments(session)) == ["pr-5", "pr-6"]


def test_a_push_moves_the_environment_to_the_new_commit_after_a_moment(
    deliver: Deliver, examples: Examples, session: Session, queue: FakeQueue
) -> None:
    deliver("pull_request", examples.pull_request("opened", sha=commit(1)))
    dispatched = deployments(queue)

    outcome = deliver("pull_request", examples.pull_request("synchronize", sha=commit(2)))

    [environment] = environments(session)
    assert environment.spec["ref"] == commit(2)
    assert "moving pr-2" in outcome
    run = session.exec(
        select(JobRun).where(JobRun.environment_id == environment.id).order_by(col(JobRun.id).desc())
    ).first()
    assert run is not None
    assert run.kind == "redeploy"
    assert run.retry_at is not None  # held back: the reconciler starts it once no newer push came
    assert deployments(queue) == dispatched


def test_ten_pushes_within_a_second_make_one_deployment_of_the_last(
    deliver: Deliver, examples: Examples, session: Session
) -> None:
    deliver("pull_request", examples.pull_request("opened", sha=commit(0)))
    for n in range(1, 11):
        deliver("pull_request", examples.pull_request("synchronize", sha=commit(n)))

    [environment] = environments(session)
    assert environment.spec["ref"] == commit(10)
    runs = list(session.exec(select(JobRun).where(JobRun.environment_id == environment.id)))
    active = [run for run in runs if run.status in (JobStatus.queued, JobStatus.running)]
    assert len(active) == 1
    assert active[0].generation == environment.desired_generation
    assert all(run.status is JobStatus.abandoned for run in runs if run is not active[0])


def test_an_older_event_arriving_late_never_undoes_a_newer_one(
    deliver: Deliver, examples: Examples, session: Session
) -> None:
    deliver("pull_request", examples.pull_request("opened", sha=commit(1), updated_at="2026-12-05T10:00:00Z"))
    deliver(
        "pull_request",
        examples.pull_request("closed", sha=commit(1), state="closed", updated_at="2026-12-05T10:05:00Z"),
    )
    late = deliver(
        "pull_request", examples.pull_request("synchronize", sha=commit(2), updated_at="2026-12-05T10:01:00Z")
    )

    assert "older event" in late
    pr = pull_request(session)
    assert (pr.state, pr.head_sha) == ("closed", commit(1))
    [environment] = environments(session)
    assert environment.desired_state == "absent"


def test_closing_or_merging_deletes_the_environment(
    deliver: Deliver, examples: Examples, session: Session
) -> None:
    deliver("pull_request", examples.pull_request("opened", number=2, sha=commit(1)))
    deliver("pull_request", examples.pull_request("opened", number=9, sha=commit(2)))

    deliver("pull_request", examples.pull_request("closed", number=2, sha=commit(1), state="closed"))
    merged = examples.pull_request("closed", number=9, sha=commit(2), state="closed", merged=True)
    deliver("pull_request", merged)

    assert {e.name: e.desired_state for e in environments(session)} == {"pr-2": "absent", "pr-9": "absent"}
    assert pull_request(session, 9).merged


def test_reopening_after_close_makes_a_new_environment(
    deliver: Deliver, examples: Examples, session: Session
) -> None:
    deliver("pull_request", examples.pull_request("opened", sha=commit(1)))
    deliver("pull_request", examples.pull_request("closed", sha=commit(1), state="closed"))
    deliver("pull_request", examples.pull_request("reopened", sha=commit(1)))

    live = [e for e in environments(session) if e.desired_state == "present"]
    assert len(live) == 1
    assert pull_request(session).environment_id == live[0].id


def test_a_name_taken_by_hand_gets_the_commit_appended(
    deliver: Deliver, examples: Examples, session: Session, project: Any, world: Any, queue: FakeQueue
) -> None:
    from envhub.services.environments import create_environment

    create_environment(session=session, actor=world.owner, queue=queue, project_id=project.id, name="pr-2")
    deliver("pull_request", examples.pull_request("opened", sha=commit(1)))

    assert sorted(e.name for e in environments(session)) == ["pr-2", f"pr-2-{commit(1)[:7]}"]


def test_pushes_make_branch_environments_only_where_configured(
    deliver: Deliver, examples: Examples, session: Session, connection: GithubConnection
) -> None:
    assert "no branch environment" in deliver("push", examples.push("main", commit(4)))
    assert "a tag" in deliver("push", examples.get("push"))  # the first example pushes a tag
    assert environments(session) == []

    connection.push_branches = ["release/*"]
    session.add(connection)
    session.commit()
    deliver("push", examples.push("release/1.2", commit(5)))
    [environment] = environments(session)
    assert environment.name == "branch-release-1-2"
    assert environment.trigger is Trigger.push
    assert environment.spec["ref"] == commit(5)

    deliver("push", examples.push("release/1.2", commit(6)))
    [environment] = environments(session)
    assert environment.spec["ref"] == commit(6)

    gone = examples.push("release/1.2", "0" * 40)
    gone["deleted"] = True
    deliver("push", gone)
    [environment] = environments(session)
    assert environment.desired_state == "absent"


def test_a_delivery_applied_twice_does_its_work_once(
    github: GitHub, examples: Examples, session: Session, queue: FakeQueue, connection: GithubConnection
) -> None:
    answer = github.send("pull_request", examples.pull_request("opened", sha=commit(1)))
    row = session.exec(select(WebhookDelivery)).one()
    assert row.id is not None
    apply_delivery(session=session, queue=queue, delivery_row=row.id)
    again = apply_delivery(session=session, queue=queue, delivery_row=row.id)

    assert answer.status_code == 202
    assert again == "nothing to do"
    assert len(environments(session)) == 1


@pytest.mark.database("sqlite", "postgresql")
def test_deleting_the_project_removes_its_connection_and_pull_requests(
    deliver: Deliver, github: GitHub, examples: Examples, session: Session, project: Any, world: World
) -> None:
    deliver("pull_request", examples.pull_request("opened", sha=commit(1)))
    deliver("pull_request", examples.pull_request("closed", sha=commit(1), state="closed"))
    for environment in environments(session):  # the worker would have finished the teardown
        environment.phase = Phase.deleted
        session.add(environment)
    session.commit()

    delete_project(session=session, actor=world.owner, project_id=project.id)

    session.commit()
    session.expire_all()
    assert session.exec(select(GithubConnection)).all() == []
    assert session.exec(select(PullRequest)).all() == []
    session.commit()
    late = github.send("pull_request", examples.pull_request("reopened", sha=commit(1)))
    assert late.status_code == 401  # nobody's secret any more: nothing happens


def test_an_environment_an_earlier_try_made_but_never_linked_is_adopted_not_made_twice(
    deliver: Deliver, examples: Examples, session: Session, project: Any, queue: FakeQueue
) -> None:
    from envhub.services.environments import create_environment
    from envhub.services.pull_requests import GITHUB

    # A delivery job made the environment, then its worker died before linking it to the pull request.
    create_environment(
        session=session,
        actor=GITHUB,
        queue=queue,
        project_id=project.id,
        name="pr-2",
        overrides={"ref": commit(1)},
        trigger="pull_request",
    )
    deliver("pull_request", examples.pull_request("opened", sha=commit(1)))

    [environment] = environments(session)
    assert pull_request(session).environment_id == environment.id
