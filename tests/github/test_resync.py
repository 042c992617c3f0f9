"""Nothing leaks: events GitHub never delivered are caught up by the reconciler (issue 11 point 6)."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import Session, select

from envhub.models import Environment, GithubConnection, PullRequest
from envhub.models.base import utcnow
from envhub.services.pull_requests import resync_repositories
from tests.github.conftest import REPOSITORY, commit
from tests.support.fakes import FakeQueue
from tests.support.github_stub import GithubStub


def live(session: Session) -> dict[str, str]:
    session.expire_all()
    return {
        e.name: str(e.spec.get("ref"))
        for e in session.exec(select(Environment))
        if e.desired_state == "present"
    }


def test_a_lost_close_a_lost_open_and_a_lost_push_are_caught_up(
    stub: GithubStub, session: Session, connection: GithubConnection
) -> None:
    queue = FakeQueue()
    stub.open_pull(REPOSITORY, number=2, head_sha=commit(1))
    stub.open_pull(REPOSITORY, number=3, head_sha=commit(3))
    # Both opens were lost (envhub was down, the webhook not yet set up): the first pass makes them.
    assert resync_repositories(session=session, queue=queue) == [connection.id]
    assert live(session) == {"pr-2": commit(1), "pr-3": commit(3)}

    # Then GitHub's close of #2, push to #3 and open of #4 are lost too.
    stub.close_pull(REPOSITORY, 2)
    stub.push(REPOSITORY, 3, commit(4))
    stub.open_pull(REPOSITORY, number=4, head_sha=commit(5))
    assert resync_repositories(session=session, queue=queue) == []  # checked a moment ago: not yet
    connection.pulls_checked_at = utcnow() - timedelta(hours=1)
    session.add(connection)
    session.commit()
    calls = stub.count()

    assert resync_repositories(session=session, queue=queue) == [connection.id]

    assert live(session) == {"pr-3": commit(4), "pr-4": commit(5)}
    assert session.exec(select(PullRequest).where(PullRequest.number == 2)).one().state == "closed"
    assert stub.count() - calls == 1  # one page of open pull requests
    assert {job.function for job in queue.jobs} >= {"envhub.jobs.github.sync_pull_request"}


def test_github_down_leaves_everything_as_it_is_until_the_next_interval(
    stub: GithubStub, session: Session, connection: GithubConnection
) -> None:
    stub.fail(503, times=5)
    assert resync_repositories(session=session, queue=FakeQueue()) == []
    session.expire_all()
    assert session.exec(select(GithubConnection)).one().pulls_checked_at is not None
