"""A pull request's life on a real worker: GitHub's example payloads, a real git repository,
the local runtime; the environment serves each head commit and goes when the pull request closes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from envhub.config import Settings
from envhub.domain.phases import Phase
from envhub.models import Environment, GithubConnection, JobRun, JobStatus, Project, PullRequest
from tests.github.conftest import REPOSITORY, Examples, GitHub
from tests.github.live import Repository, serves
from tests.support.db import fetch
from tests.support.github_stub import GithubStub
from tests.support.waiting import wait_for
from tests.support.workers import Workers

pytestmark = pytest.mark.slow


def test_a_pull_request_opened_pushed_twice_and_closed(
    github: GitHub,
    examples: Examples,
    connection: GithubConnection,
    project: Project,
    session: Session,
    db: Engine,
    workers: Workers,
    worker_settings: Settings,
    tmp_path: Path,
    stub: GithubStub,
) -> None:
    repo = Repository(tmp_path / "repo")
    first = repo.commit("first commit")
    project.repo_url = str(repo.path)
    project.command = "python3 -m http.server $PORT"
    session.add(project)
    session.commit()
    stub.open_pull(REPOSITORY, number=2, head_sha=first)
    workers.start()

    assert github.send("pull_request", examples.pull_request("opened", sha=first)).status_code == 202

    def environment() -> Environment | None:
        session.expire_all()
        pr = session.exec(select(PullRequest)).first()
        return session.get(Environment, pr.environment_id) if pr and pr.environment_id else None

    def ready() -> Environment | None:
        env = environment()
        if env is not None and env.phase is Phase.failed:
            raise AssertionError(f"{env.error_code}: {env.message}\n{workers.log_tail()}")
        return env if env is not None and env.phase is Phase.ready else None

    env = wait_for(ready, timeout=120, what="the pull request's environment", describe=workers.log_tail)
    host = "pr-2.shop.acme.localhost:3000"
    assert env.public_url == f"http://{host}/"
    assert serves(github, host) == "first commit"

    def comment() -> str:
        bodies = [c["body"] for c in stub.comments_on(REPOSITORY, 2)]
        assert len(bodies) <= 1, bodies  # one comment, edited in place
        return bodies[0] if bodies else ""

    wait_for(lambda: "Ready" in comment(), timeout=60, what="the comment to say ready", describe=comment)
    assert f"[http://{host}/](http://{host}/)" in comment()

    second, third = repo.commit("second commit"), repo.commit("third commit")
    for sha in (second, third):  # two pushes in a row: one deployment, of the last
        assert github.send("pull_request", examples.pull_request("synchronize", sha=sha)).status_code == 202
    wait_for(lambda: serves(github, host) == "third commit", timeout=120, what="the third commit served")
    assert environment().spec["ref"] == third  # type: ignore[union-attr]

    def redeploys() -> list[str]:
        session.expire_all()
        runs = session.exec(select(JobRun).where(JobRun.environment_id == env.id, JobRun.kind == "redeploy"))
        return [run.status.value for run in runs]

    wait_for(
        lambda: "running" not in redeploys() and "queued" not in redeploys(), timeout=60, what="redeploys"
    )
    assert sorted(redeploys()).count("succeeded") == 1, redeploys()
    # Any other run gave way: superseded by the newer push, or re-driven by the reconciler
    # when a loaded machine kept its worker's heartbeat late (the same generation, not a second deploy).
    session.expire_all()
    others = session.exec(
        select(JobRun).where(
            JobRun.environment_id == env.id, JobRun.kind == "redeploy", JobRun.status != JobStatus.succeeded
        )
    ).all()
    for run in others:
        assert run.status is JobStatus.abandoned, (run.status, run.error)
        reason = run.error or ""
        assert "superseded" in reason or "re-driven by the reconciler" in reason, reason

    closed = examples.pull_request("closed", sha=third, state="closed")
    assert github.send("pull_request", closed).status_code == 202
    assert env.id is not None
    gone = wait_for(
        lambda: (e := fetch(db, Environment, env.id)) is not None and e.phase is Phase.deleted and e,
        timeout=120,
        what="the environment deleted",
        describe=workers.log_tail,
    )
    assert gone
    assert serves(github, host) == ""
    wait_for(lambda: "Deleted" in comment(), timeout=60, what="the comment to say deleted", describe=comment)
    repo = stub.repos[REPOSITORY.lower()]

    def last_states() -> list[str]:
        return [repo.statuses[d][-1]["state"] if repo.statuses[d] else "" for d in list(repo.deployments)]

    wait_for(
        lambda: set(last_states()) == {"inactive"},
        timeout=30,
        what="every Deployment inactive",
        describe=last_states,
    )
