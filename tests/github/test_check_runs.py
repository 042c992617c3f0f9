"""A check run ("envhub preview") on the commit a pull request's environment runs: issue 11 point 4.

App connections only (GitHub lets no token make one), made once per commit
and updated only when its state changes, in the same sync as the comment and
the Deployment. Deliveries go through the real route; the sync runs against
the loopback GitHub stub through the real PyGithub, which counts every call.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import Session, select

from envhub.domain.phases import Phase
from envhub.models import GithubConnection, Project, PullRequest
from envhub.services.github import connect_github, update_github_policy
from tests.github.conftest import REPOSITORY, Examples, GitHub, commit
from tests.github.test_comments import Flow
from tests.support.fakes import FakeQueue
from tests.support.github_stub import GithubStub
from tests.support.world import World

URL = "http://pr-2.shop.acme.localhost:3000/"
RUNS = f"/repos/{REPOSITORY}/check-runs"


@pytest.fixture
def queue() -> FakeQueue:
    return FakeQueue()


@pytest.fixture
def app_connection(
    session: Session, project: Project, world: World, stub: GithubStub, connection: GithubConnection
) -> GithubConnection:
    """The same project reconnected as a GitHub App installation (it keeps its webhook secret)."""
    assert project.id is not None
    private_key = stub.add_app(42)
    stub.install(42, 7, REPOSITORY)
    connect_github(
        session=session,
        actor=world.admin,
        project_id=project.id,
        repository=REPOSITORY,
        auth="app",
        api_url=stub.api_url,
        app_id=42,
        installation_id=7,
        private_key=private_key,
    )
    session.commit()
    stub.calls.clear()
    return session.exec(select(GithubConnection)).one()


@pytest.fixture
def flow(github: GitHub, session: Session, queue: FakeQueue, stub: GithubStub) -> Flow:
    stub.open_pull(REPOSITORY, number=2, head_sha=commit(1), title="Update the README with new information.")
    return Flow(github, session, queue, stub)


def runs(stub: GithubStub, sha: str) -> list[dict[str, Any]]:
    return stub.check_runs_on(REPOSITORY, sha)


def test_an_app_connection_reports_in_progress_then_success_with_the_url(
    app_connection: GithubConnection, flow: Flow, examples: Examples, stub: GithubStub
) -> None:
    flow.send("pull_request", examples.pull_request("opened", sha=commit(1)))
    [run] = runs(stub, commit(1))
    assert (run["name"], run["status"], run["conclusion"]) == ("envhub preview", "in_progress", None)
    assert "/projects/" in run["details_url"]
    assert "/environments/" in run["details_url"]

    flow.phase(Phase.provisioning)  # still in progress: no call
    flow.phase(Phase.ready, public_url=URL)

    [run] = runs(stub, commit(1))
    assert (run["status"], run["conclusion"]) == ("completed", "success")
    assert URL in run["output"]["title"]
    assert f"[{URL}]({URL})" in run["output"]["summary"]
    assert stub.count("POST", RUNS) == 1
    assert stub.count("PATCH", RUNS) == 1
    assert stub.count("GET", RUNS) == 0  # updates go out without reading the run first
    assert all(call.auth == "installation" for call in stub.calls if call.path.startswith(RUNS))

    flow.phase(Phase.sleeping)  # still a success: no call
    assert stub.count(path=RUNS) == 2


def test_a_failure_carries_the_error_and_its_next_step(
    app_connection: GithubConnection, flow: Flow, examples: Examples, stub: GithubStub
) -> None:
    flow.send("pull_request", examples.pull_request("opened", sha=commit(1)))
    flow.phase(Phase.failed, error_code="process_exited", message="the command exited with status 1")

    [run] = runs(stub, commit(1))
    assert (run["status"], run["conclusion"]) == ("completed", "failure")
    assert "process_exited: the command exited with status 1" in run["output"]["title"]
    assert "process_exited: the command exited with status 1" in run["output"]["summary"]
    assert "Next step:" in run["output"]["summary"]

    flow.phase(Phase.provisioning)  # retried: a completed run stays as it was, a new run says so
    flow.phase(Phase.ready, public_url=URL)
    first, second = runs(stub, commit(1))
    assert first["conclusion"] == "failure"
    assert (second["status"], second["conclusion"]) == ("completed", "success")


def test_a_new_push_completes_the_old_commits_run_and_makes_one_for_the_new(
    app_connection: GithubConnection, flow: Flow, examples: Examples, stub: GithubStub
) -> None:
    flow.send("pull_request", examples.pull_request("opened", sha=commit(1)))
    flow.send("pull_request", examples.pull_request("synchronize", sha=commit(2)))  # before it was ready

    [old] = runs(stub, commit(1))
    assert (old["status"], old["conclusion"]) == ("completed", "cancelled")
    assert commit(2)[:12] in old["output"]["summary"]
    [new] = runs(stub, commit(2))
    assert new["status"] == "in_progress"

    flow.phase(Phase.ready, public_url=URL)
    flow.send("pull_request", examples.pull_request("synchronize", sha=commit(3)))  # after it was ready

    [done] = runs(stub, commit(2))
    assert done["conclusion"] == "success"  # a finished run is left as it was
    [newest] = runs(stub, commit(3))
    assert newest["status"] == "in_progress"
    assert stub.count("POST", RUNS) == 3
    assert stub.count("PATCH", RUNS) == 2  # commit 1 cancelled, commit 2 success


def test_closing_completes_a_run_still_in_progress_as_neutral_and_says_why(
    app_connection: GithubConnection, flow: Flow, examples: Examples, stub: GithubStub
) -> None:
    flow.send("pull_request", examples.pull_request("opened", sha=commit(1)))
    flow.send("pull_request", examples.pull_request("closed", sha=commit(1), state="closed"))
    flow.phase(Phase.deleted)

    [run] = runs(stub, commit(1))
    assert (run["status"], run["conclusion"]) == ("completed", "neutral")
    assert "the pull request was closed" in run["output"]["summary"]
    assert stub.count("PATCH", RUNS) == 1


def test_a_pull_request_without_an_environment_gets_no_run(
    app_connection: GithubConnection, flow: Flow, examples: Examples, stub: GithubStub
) -> None:
    flow.send("pull_request", examples.pull_request("opened", sha=commit(1), draft=True))

    assert len(flow.comments()) == 1
    assert stub.count(path=RUNS) == 0


def test_a_token_connection_makes_no_check_run_calls(
    connection: GithubConnection, flow: Flow, examples: Examples, stub: GithubStub, session: Session
) -> None:
    assert connection.auth == "token"
    assert connection.check_runs  # on by default, but only an App can make one
    flow.send("pull_request", examples.pull_request("opened", sha=commit(1)))
    flow.phase(Phase.ready, public_url=URL)
    flow.send("pull_request", examples.pull_request("synchronize", sha=commit(2)))
    flow.phase(Phase.failed, error_code="process_exited", message="the command exited with status 1")

    assert stub.count(path=RUNS) == 0
    assert flow.statuses()[-1] == "failure"
    pr = session.exec(select(PullRequest)).one()
    assert (pr.check_run_id, pr.check_run_state) == (None, "")
    session.expire_all()
    assert session.exec(select(GithubConnection)).one().last_error == ""


def test_the_project_can_turn_check_runs_off(
    app_connection: GithubConnection,
    flow: Flow,
    examples: Examples,
    stub: GithubStub,
    session: Session,
    world: World,
) -> None:
    view = update_github_policy(
        session=session,
        actor=world.admin,
        project_id=app_connection.project_id,
        changes={"check_runs": False},
    )
    session.commit()
    assert view["check_runs"] is False

    flow.send("pull_request", examples.pull_request("opened", sha=commit(1)))
    flow.phase(Phase.ready, public_url=URL)

    assert stub.count(path=RUNS) == 0
    assert "Ready" in flow.comments()[0]
    assert flow.statuses() == ["in_progress", "success"]


def test_an_app_without_the_checks_permission_still_gets_its_comment(
    app_connection: GithubConnection, flow: Flow, examples: Examples, stub: GithubStub, session: Session
) -> None:
    stub.fail(403, path=RUNS, times=1)  # "Resource not accessible by integration"
    flow.send("pull_request", examples.pull_request("opened", sha=commit(1)))

    assert "Creating" in flow.comments()[0]
    assert flow.statuses() == ["in_progress"]
    session.expire_all()
    assert not session.exec(select(PullRequest)).one().sync_due
    error = session.exec(select(GithubConnection)).one().last_error
    assert error.startswith("check runs: github_forbidden")
    assert "Checks permission" in error

    flow.phase(Phase.ready, public_url=URL)  # permission granted since: the run is made
    [run] = runs(stub, commit(1))
    assert run["conclusion"] == "success"
    session.expire_all()
    assert session.exec(select(GithubConnection)).one().last_error == ""


def test_github_down_during_the_check_run_retries_the_whole_sync(
    app_connection: GithubConnection, flow: Flow, examples: Examples, stub: GithubStub, session: Session
) -> None:
    flow.send("pull_request", examples.pull_request("opened", sha=commit(1)))
    stub.fail(503, path=RUNS, times=10)
    flow.phase(Phase.ready, public_url=URL)

    session.expire_all()
    pr = session.exec(select(PullRequest)).one()
    assert pr.sync_due  # the reconciler re-drives it
    assert pr.check_run_state == "in_progress"
    assert session.exec(select(GithubConnection)).one().last_error.startswith("github_unavailable")

    stub.failures.clear()
    assert pr.id is not None
    from envhub.services.pull_requests import sync_to_github

    sync_to_github(session=session, pr_row=pr.id)
    [run] = runs(stub, commit(1))
    assert run["conclusion"] == "success"
    [comment] = stub.comments_on(REPOSITORY, 2)
    assert "Ready" in comment["body"]
