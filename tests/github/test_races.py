"""Races a pull request's events run into, performed for real: GitHub's example payloads through
the webhook route, real workers, a real git repository, the local runtime and envhub's gateway.

* closed while the deployment for opened still runs: nothing is left behind;
* ten synchronize events within one second: one environment on the last commit, one comment,
  and no deployment of an older commit finishes after the newer one;
* a worker killed between steps (in the delivery job, then in the deployment): a new worker
  converges, with one comment that says ready.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from envhub.config import Settings
from envhub.domain.phases import Phase
from envhub.models import Environment, GithubConnection, JobRun, JobStatus, Project, PullRequest
from tests.github.conftest import REPOSITORY, Examples, GitHub
from tests.github.live import Repository, serves
from tests.support.db import fetch, fetch_all
from tests.support.github_stub import GithubStub
from tests.support.runtime import is_gone, process_tree, recorded_pid
from tests.support.waiting import wait_for
from tests.support.workers import Workers

pytestmark = pytest.mark.slow

HOST = "pr-2.shop.acme.localhost:3000"
# An app slow to become healthy: its deployment is still running for a couple of seconds.
SLOW_APP = "sleep 2; exec python3 -m http.server $PORT"


def _use(session: Session, project: Project, repo: Repository, command: str) -> None:
    project.repo_url = str(repo.path)
    project.command = command
    session.add(project)
    session.commit()


class Watch:
    """What the test reads back: the pull request's environment, its runs, the comment, the Deployments."""

    def __init__(self, db: Engine, stub: GithubStub, workers: Workers) -> None:
        self.db, self.stub, self.workers = db, stub, workers

    def environment(self) -> Environment | None:
        prs = fetch_all(self.db, PullRequest)
        if not prs or prs[0].environment_id is None:
            return None
        return fetch(self.db, Environment, prs[0].environment_id)

    def ready(self) -> Environment | None:
        env = self.environment()
        if env is not None and env.phase is Phase.failed:
            raise AssertionError(f"{env.error_code}: {env.message}\n{self.workers.log_tail()}")
        return env if env is not None and env.phase is Phase.ready else None

    def runs(self, environment_id: int | None, kind: str | None = None) -> list[JobRun]:
        runs = fetch_all(self.db, JobRun, JobRun.environment_id == environment_id)
        return [run for run in runs if kind is None or run.kind == kind]

    def comments(self) -> list[str]:
        return [c["body"] for c in self.stub.comments_on(REPOSITORY, 2)]

    def comment(self) -> str:
        bodies = self.comments()
        assert len(bodies) <= 1, bodies  # one comment, edited in place
        return bodies[0] if bodies else ""

    def deployments(self) -> list[tuple[str, str]]:
        """(commit, last status) of each GitHub Deployment, oldest first."""
        repo = self.stub.repos[REPOSITORY.lower()]
        return [
            (d["sha"], repo.statuses[i][-1]["state"] if repo.statuses.get(i) else "")
            for i, d in sorted(repo.deployments.items())
        ]

    def describe(self) -> str:
        env = self.environment()
        runs = self.runs(env.id) if env else []
        said = [(r.id, r.kind, r.status.value, r.generation, r.error) for r in runs]
        return f"environment: {env}\nruns: {said}\ncomments: {self.comments()}\n{self.workers.log_tail()}"


@pytest.fixture
def watch(db: Engine, stub: GithubStub, workers: Workers) -> Watch:
    return Watch(db, stub, workers)


def test_closed_while_the_deployment_runs_leaves_nothing_behind(
    github: GitHub,
    examples: Examples,
    connection: GithubConnection,
    project: Project,
    session: Session,
    workers: Workers,
    worker_settings: Settings,
    tmp_path: Path,
    stub: GithubStub,
    watch: Watch,
) -> None:
    repo = Repository(tmp_path / "repo")
    first = repo.commit("first commit")
    _use(session, project, repo, SLOW_APP)
    stub.open_pull(REPOSITORY, number=2, head_sha=first)
    workers.start()
    workers.start()  # one deploys while the other takes the close
    assert github.send("pull_request", examples.pull_request("opened", sha=first)).status_code == 202

    def waiting_for_health() -> Environment | None:
        env = watch.environment()
        if env is None or env.id is None:
            return None
        runs = watch.runs(env.id)
        health = [s for run in runs for s in run.steps if s["key"] == "health"]
        return env if health and health[-1]["status"] == "running" else None

    env = wait_for(
        waiting_for_health, timeout=60, what="the deployment to wait for health", describe=watch.describe
    )
    assert env.id is not None
    env_dir = worker_settings.envs_dir / str(env.id)
    family = process_tree(recorded_pid(env_dir))
    assert family
    assert not any(is_gone(p) for p in family)

    stub.close_pull(REPOSITORY, 2)
    closed = examples.pull_request("closed", sha=first, state="closed")
    assert github.send("pull_request", closed).status_code == 202
    provision = watch.runs(env.id, "provision")
    assert [run.status for run in provision] == [JobStatus.running], watch.describe()  # still deploying

    wait_for(
        lambda: (e := watch.environment()) is not None and e.phase is Phase.deleted,
        timeout=60,
        what="the environment deleted",
        describe=watch.describe,
    )
    # The deployment for opened never made it ready: it was abandoned, and the teardown ran after it.
    assert [run.status for run in watch.runs(env.id, "provision")] == [JobStatus.abandoned]
    teardowns = [run.status for run in watch.runs(env.id, "teardown")]
    # (A teardown waiting on the deploying one for the environment's lock may be re-driven as lost.)
    assert teardowns[-1] is JobStatus.succeeded, watch.describe()
    assert set(teardowns[:-1]) <= {JobStatus.abandoned}, watch.describe()
    assert all(is_gone(p) for p in family), [p.pid for p in family if not is_gone(p)]
    assert not env_dir.exists(), sorted(str(p) for p in env_dir.rglob("*"))
    assert serves(github, HOST) == ""
    wait_for(
        lambda: "Deleted" in watch.comment(),
        timeout=30,
        what="the comment to say deleted",
        describe=watch.describe,
    )
    wait_for(
        lambda: {state for _, state in watch.deployments()} == {"inactive"},
        timeout=30,
        what="every Deployment inactive",
        describe=lambda: str(watch.deployments()),
    )
    assert fetch(watch.db, Environment, env.id).phase is Phase.deleted  # type: ignore[union-attr]


def test_ten_pushes_within_a_second_make_one_environment_on_the_last_commit(
    github: GitHub,
    examples: Examples,
    connection: GithubConnection,
    project: Project,
    session: Session,
    workers: Workers,
    tmp_path: Path,
    stub: GithubStub,
    watch: Watch,
) -> None:
    repo = Repository(tmp_path / "repo")
    first = repo.commit("commit 0")
    _use(session, project, repo, "python3 -m http.server $PORT")
    stub.open_pull(REPOSITORY, number=2, head_sha=first)
    workers.start()
    assert github.send("pull_request", examples.pull_request("opened", sha=first)).status_code == 202
    env = wait_for(watch.ready, timeout=60, what="the pull request's environment", describe=watch.describe)
    assert env.id is not None
    wait_for(lambda: "Ready" in watch.comment(), timeout=30, what="the comment to say ready")

    pushed = [repo.commit(f"commit {n}") for n in range(1, 11)]
    payloads = [examples.pull_request("synchronize", sha=sha) for sha in pushed]  # each newer than the last
    stub.push(REPOSITORY, 2, pushed[-1])

    def send(payload: dict[str, object]) -> int:
        return github.send("pull_request", payload).status_code

    began = time.monotonic()
    with ThreadPoolExecutor(len(payloads)) as pool:  # GitHub delivers them concurrently, in no order
        answers = list(pool.map(send, payloads))
    took = time.monotonic() - began
    assert answers == [202] * 10
    assert took < 1.0, f"the ten deliveries took {took:.2f}s"

    last = pushed[-1]
    wait_for(lambda: serves(github, HOST) == "commit 10", timeout=60, what="the last commit served")

    def settled() -> bool:
        runs = watch.runs(env.id, "redeploy")
        return bool(runs) and all(run.status not in (JobStatus.queued, JobStatus.running) for run in runs)

    wait_for(settled, timeout=60, what="the redeploys to end", describe=watch.describe)
    wait_for(
        lambda: "Ready" in watch.comment() and last[:12] in watch.comment(),
        timeout=30,
        what="the comment to say ready at the last commit",
        describe=watch.describe,
    )
    now = watch.environment()
    assert now is not None
    assert now.id == env.id
    assert now.phase is Phase.ready
    assert now.spec["ref"] == last
    assert len(fetch_all(watch.db, Environment)) == 1
    assert len(watch.comments()) == 1
    # No deployment of an older commit finished after the newer one: the one redeploy that
    # succeeded is of the last generation, every other was abandoned before it could.
    redeploys = watch.runs(env.id, "redeploy")
    succeeded = [run for run in redeploys if run.status is JobStatus.succeeded]
    assert [run.generation for run in succeeded] == [now.desired_generation], watch.describe()
    assert {run.status for run in redeploys} <= {JobStatus.succeeded, JobStatus.abandoned}, watch.describe()
    assert serves(github, HOST) == "commit 10"
    wait_for(
        lambda: watch.deployments()[-1] == (last, "success"),
        timeout=30,
        what="the last Deployment a success at the last commit",
        describe=lambda: str(watch.deployments()),
    )
    assert {state for _, state in watch.deployments()[:-1]} <= {"inactive"}, watch.deployments()


def test_a_worker_killed_between_steps_converges(
    github: GitHub,
    examples: Examples,
    connection: GithubConnection,
    project: Project,
    session: Session,
    workers: Workers,
    tmp_path: Path,
    stub: GithubStub,
    watch: Watch,
) -> None:
    repo = Repository(tmp_path / "repo")
    head = repo.commit("the head commit")
    _use(session, project, repo, SLOW_APP)
    stub.open_pull(REPOSITORY, number=2, head_sha=head)
    comments = f"/repos/{REPOSITORY}/issues/2/comments"
    # GitHub's secondary rate limit on the first comment: the delivery job waits as GitHub asks,
    # so the kill lands in it, after the environment was asked for and before the comment exists.
    stub.fail(403, method="POST", path=comments, retry_after=30, kind="secondary")
    first = workers.start()
    assert github.send("pull_request", examples.pull_request("opened", sha=head)).status_code == 202
    wait_for(lambda: stub.count("POST", comments) >= 1, timeout=30, what="the delivery job to comment")
    workers.kill(first)
    assert watch.comments() == []

    second = workers.start()

    def deploying() -> bool:
        env = watch.environment()
        runs = watch.runs(env.id) if env else []
        return any(
            run.status is JobStatus.running and s["key"] == "health" and s["status"] == "running"
            for run in runs
            for s in run.steps
        )

    wait_for(deploying, timeout=60, what="the deployment to wait for health", describe=watch.describe)
    workers.kill(second)

    workers.start()
    env = wait_for(watch.ready, timeout=60, what="the environment ready", describe=watch.describe)
    assert env.spec["ref"] == head
    assert serves(github, HOST) == "the head commit"
    wait_for(
        lambda: "Ready" in watch.comment(),
        timeout=30,
        what="the comment to say ready",
        describe=watch.describe,
    )
    assert len(watch.comments()) == 1
    assert f"[http://{HOST}/](http://{HOST}/)" in watch.comment()
    assert len(fetch_all(watch.db, Environment)) == 1
    assert stub.count("POST", comments) == 2  # the rate-limited one, then the one comment
