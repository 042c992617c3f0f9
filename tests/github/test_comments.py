"""One comment per pull request, kept current, and a GitHub Deployment per environment: issue 11 point 4.

Deliveries go through the real route; the jobs' use cases run here against
the loopback GitHub stub through the real PyGithub, which counts every call.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import Session, select

from envhub.domain.phases import Phase
from envhub.models import Environment, GithubConnection, PullRequest, WebhookDelivery
from envhub.services.pull_requests import apply_delivery, redrive_syncs, sync_to_github
from tests.github.conftest import REPOSITORY, Examples, GitHub, commit
from tests.support.fakes import FakeQueue
from tests.support.github_stub import GithubStub


@pytest.fixture
def queue() -> FakeQueue:
    return FakeQueue()


class Flow:
    """GitHub sends, the delivery job runs, then the sync jobs it asked for."""

    def __init__(self, github: GitHub, session: Session, queue: FakeQueue, stub: GithubStub) -> None:
        self.github, self.session, self.queue, self.stub = github, session, queue, stub

    def send(self, event: str, payload: dict[str, Any]) -> None:
        self.session.commit()
        answer = self.github.send(event, payload)
        assert answer.status_code == 202, answer.text
        row = self.session.exec(
            select(WebhookDelivery).where(WebhookDelivery.delivery_id == answer.json()["delivery"])
        ).one()
        assert row.id is not None
        apply_delivery(session=self.session, queue=self.queue, delivery_row=row.id)
        self.sync()

    def sync(self) -> list[str]:
        """Run the sync jobs queued so far, as a worker would."""
        done = []
        for job in list(self.queue.jobs):
            if job.function == "envhub.jobs.github.sync_pull_request" and job.job_id in self.queue.pending:
                self.queue.pending.discard(job.job_id)
                done.append(sync_to_github(session=self.session, pr_row=int(job.args[0])))  # type: ignore[call-overload]
        return done

    def phase(self, phase: Phase, **changes: Any) -> None:
        """What a deployment job does to the environment, then the sync it asks for."""
        from envhub.services.pull_requests import environment_changed

        self.session.expire_all()
        environment = self.session.exec(select(Environment)).one()
        environment.phase = phase
        for key, value in changes.items():
            setattr(environment, key, value)
        self.session.add(environment)
        self.session.commit()
        assert environment.id is not None
        environment_changed(session=self.session, queue=self.queue, environment_id=environment.id)
        self.sync()

    def comments(self, number: int = 2) -> list[str]:
        return [c["body"] for c in self.stub.comments_on(REPOSITORY, number)]

    def statuses(self) -> list[str]:
        repo = self.stub.repos[REPOSITORY.lower()]
        return [s["state"] for deployment in repo.statuses.values() for s in deployment]


@pytest.fixture
def flow(
    github: GitHub, session: Session, queue: FakeQueue, stub: GithubStub, connection: GithubConnection
) -> Flow:
    stub.open_pull(REPOSITORY, number=2, head_sha=commit(1), title="Update the README with new information.")
    return Flow(github, session, queue, stub)


def test_the_comment_follows_the_environment_from_creating_to_ready_to_deleted(
    flow: Flow, examples: Examples, stub: GithubStub
) -> None:
    flow.send("pull_request", examples.pull_request("opened", sha=commit(1)))
    [body] = flow.comments()
    assert "Creating" in body
    assert commit(1)[:12] in body
    assert "/projects/" in body
    assert "#terminal-panel" in body
    assert "#logs" in body

    flow.phase(Phase.provisioning)  # nothing a reader would see changed: no edit
    assert stub.count("PATCH") == 0

    flow.phase(Phase.ready, public_url="http://pr-2.shop.acme.localhost:3000/")
    [body] = flow.comments()
    assert "Ready" in body
    assert "[http://pr-2.shop.acme.localhost:3000/](http://pr-2.shop.acme.localhost:3000/)" in body
    assert flow.statuses() == ["in_progress", "success"]
    repo = stub.repos[REPOSITORY.lower()]
    [deployment] = repo.deployments.values()
    assert deployment["transient_environment"] is True
    assert deployment["sha"] == commit(1) or deployment["ref"] == commit(1)
    assert repo.statuses[deployment["id"]][-1]["environment_url"] == "http://pr-2.shop.acme.localhost:3000/"

    flow.send("pull_request", examples.pull_request("closed", sha=commit(1), state="closed"))
    flow.phase(Phase.deleted)
    [body] = flow.comments()
    assert "Deleted" in body
    assert flow.statuses()[-1] == "inactive"
    assert stub.count("POST", f"/repos/{REPOSITORY}/issues/2/comments") == 1  # one comment, edited in place


def test_a_failure_says_why_and_what_to_do(flow: Flow, examples: Examples) -> None:
    flow.send("pull_request", examples.pull_request("opened", sha=commit(1)))
    flow.phase(Phase.failed, error_code="process_exited", message="the command exited with status 1")

    [body] = flow.comments()
    assert "Failed" in body
    assert "process_exited: the command exited with status 1" in body
    assert "Next step:" in body
    assert flow.statuses()[-1] == "failure"


def test_a_skipped_pull_request_says_why(flow: Flow, examples: Examples) -> None:
    flow.send("pull_request", examples.pull_request("opened", sha=commit(1), draft=True))

    [body] = flow.comments()
    assert "no environment for this pull request (a draft" in body
    assert flow.statuses() == []


def test_a_new_commit_gets_a_new_deployment_and_the_old_one_goes_inactive(
    flow: Flow, examples: Examples, stub: GithubStub
) -> None:
    flow.send("pull_request", examples.pull_request("opened", sha=commit(1)))
    flow.phase(Phase.ready, public_url="http://pr-2.shop.acme.localhost:3000/")
    flow.send("pull_request", examples.pull_request("synchronize", sha=commit(2)))
    flow.phase(Phase.ready)

    repo = stub.repos[REPOSITORY.lower()]
    first, second = repo.deployments.values()
    assert [s["state"] for s in repo.statuses[first["id"]]][-1] == "inactive"
    assert [s["state"] for s in repo.statuses[second["id"]]] == ["in_progress", "success"]
    [body] = flow.comments()
    assert commit(2)[:12] in body


def test_a_lost_comment_id_finds_the_comment_instead_of_writing_a_second(
    flow: Flow, examples: Examples, session: Session
) -> None:
    flow.send("pull_request", examples.pull_request("opened", sha=commit(1)))
    pr = session.exec(select(PullRequest)).one()
    pr.comment_id = None  # a worker killed after GitHub made the comment, before the id was saved
    pr.comment_body_digest = ""
    session.add(pr)
    session.commit()

    flow.phase(Phase.ready, public_url="http://pr-2.shop.acme.localhost:3000/")

    [body] = flow.comments()
    assert "Ready" in body


def test_a_comment_someone_deleted_is_written_again(flow: Flow, examples: Examples, stub: GithubStub) -> None:
    flow.send("pull_request", examples.pull_request("opened", sha=commit(1)))
    repo = stub.repos[REPOSITORY.lower()]
    repo.comments.clear()

    flow.phase(Phase.ready, public_url="http://pr-2.shop.acme.localhost:3000/")

    [body] = flow.comments()
    assert "Ready" in body


def test_github_down_or_rate_limited_loses_nothing(
    flow: Flow, examples: Examples, stub: GithubStub, session: Session, queue: FakeQueue
) -> None:
    from datetime import timedelta

    from envhub.models.base import utcnow

    stub.fail(503, times=10)
    flow.send("pull_request", examples.pull_request("opened", sha=commit(1)))
    assert flow.comments() == []
    pr = session.exec(select(PullRequest)).one()
    assert pr.sync_due
    connection = session.exec(select(GithubConnection)).one()
    assert connection.last_error.startswith("github_unavailable")

    stub.failures.clear()
    stub.fail(403, kind="secondary", retry_after=1)
    pr.updated_at = utcnow() - timedelta(minutes=1)
    session.add(pr)
    session.commit()
    assert redrive_syncs(session=session, queue=queue) == [pr.id]
    flow.sync()  # the job waits out the Retry-After (a second) and goes on
    [body] = flow.comments()
    assert "Creating" in body
    session.expire_all()
    assert not session.exec(select(PullRequest)).one().sync_due
    assert session.exec(select(GithubConnection)).one().last_error == ""


def test_a_call_that_fails_midway_keeps_what_github_already_holds(
    flow: Flow, examples: Examples, stub: GithubStub, session: Session
) -> None:
    # The Deployment is made, then its first status fails: the retry must not make a second one.
    stub.fail(503, method="POST", path=f"/repos/{REPOSITORY}/deployments/", times=10)
    flow.send("pull_request", examples.pull_request("opened", sha=commit(1)))
    repo = stub.repos[REPOSITORY.lower()]
    assert len(repo.deployments) == 1
    assert len(flow.comments()) == 1
    session.expire_all()
    pr = session.exec(select(PullRequest)).one()
    assert pr.sync_due
    assert pr.deployment_id is not None
    assert pr.deployment_state == ""

    stub.failures.clear()
    assert pr.id is not None
    sync_to_github(session=session, pr_row=pr.id)
    assert len(repo.deployments) == 1
    assert len(flow.comments()) == 1
    assert [s["state"] for s in repo.statuses[pr.deployment_id]] == ["in_progress"]
    session.expire_all()
    assert not session.exec(select(PullRequest)).one().sync_due
