"""Pull requests end to end, with GitHub on loopback: ``make bench-pull-requests``.

Runs once per runtime chosen with ``--runtimes`` (default ``local,kubernetes``),
each in a world of its own: a database on a private PostgreSQL, a redis-server,
envhub's API app under Granian (the webhook route and the gateway),
``--workers`` real workers on that runtime, and the loopback GitHub stub
(tests/support/github_stub.py) that envhub's PyGithub client talks to. A project
is connected to a repository on the stub through the connect use case; a real
git repository gives each push its commit. On the local runtime the project
runs a command from that repository; on Kubernetes it is an image-based service
on the test cluster (tests/cluster, started for this part only; how it becomes
ready without a real kubelet: bench/pull_request_runtimes.py).

Then, ``--pull-requests`` times over, one after the other, a pull request
lives its life as GitHub would tell it: opened, three pushes, closed. Each
webhook is signed with the connection's secret and sent as GitHub sends it.
Measured, with ``time.monotonic()`` from the moment the ``opened`` delivery
is sent:

* to the first PR comment appearing on the stub (target: p50 under 1 s);
* to the comment saying ready with the public URL (target: p50 under 3 s);
* GitHub API calls the whole lifecycle made (the stub counts them, by kind).

Floors measured in the same run, per runtime: one GitHub API call through
PyGithub (what a comment costs at least), and the runtime deploying the same
target by itself (what "ready" costs at least); the ratios say what envhub
adds. One table per runtime is printed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.pull_request_runtimes import RUNTIMES, RuntimeSetup, kubernetes, local, runtime_floor
from bench.servers import ROOT, wait_port
from envhub.config import Settings, override_settings
from envhub.domain.principals import Principal
from envhub.integrations.github import GithubAccess, GithubClient
from envhub.launcher import migrate
from envhub.models import Membership, Role, Team, User
from envhub.models.db import engine_for
from envhub.runtime.local.processes import free_port
from envhub.services import projects
from envhub.services.github import connect_github
from envhub.wiring import install as wire_adapters
from tests.kube.helpers import load_cluster_module
from tests.support.github_stub import GithubStub, github_stub
from tests.support.postgres import PostgresServer, private_postgres
from tests.support.redis_server import private_redis
from tests.support.repos import WorkRepo

REPOSITORY = "bench/app"
PAYLOAD = {"login": "octocat", "id": 1, "type": "User"}


# -- the world ---------------------------------------------------------------------------------


class Repo(WorkRepo):
    """A git repository whose commits say which they are."""

    def commit(self, message: str, files: dict[str, str] | None = None) -> str:
        return super().commit(message, {"index.html": message, **(files or {})})


def seed(settings: Settings, stub: GithubStub, setup: RuntimeSetup) -> tuple[int, str]:
    """A team, a project with ``setup``'s spec, connected to the stub's repository; (project id, secret)."""
    from sqlmodel import Session

    with Session(engine_for(settings.database_url), expire_on_commit=False) as session:
        user = User(username="bench", display_name="Bench")
        team = Team(name="bench", display_name="Bench")
        session.add(user)
        session.add(team)
        session.flush()
        assert user.id is not None
        assert team.id is not None
        session.add(Membership(team_id=team.id, user_id=user.id, role=Role.owner))
        session.commit()
        me = Principal(name="bench", user_id=user.id)
        project = projects.create_project(
            session=session,
            actor=me,
            team_id=team.id,
            name="app",
            **setup.project(),
        )
        assert project.id is not None
        return project.id, connect_to_stub(session, me, project.id, stub)


def connect_to_stub(
    session: Any, actor: Principal, project_id: int, stub: GithubStub, repository: str = REPOSITORY
) -> str:
    """The project connected with a token to ``repository`` on the stub; its webhook secret."""
    stub.add_repo(repository)
    made = connect_github(
        session=session,
        actor=actor,
        project_id=project_id,
        repository=repository,
        auth="token",
        api_url=stub.api_url,
        token=stub.add_token(repository),
    )
    session.commit()
    return made["webhook_secret"]


def environ(settings: Settings, port: int, debounce: float) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENVHUB_")}
    env.update(
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
        ENVHUB_DATABASE_URL=settings.database_url,
        ENVHUB_REDIS_URL=settings.redis_url,
        ENVHUB_DATA_DIR=str(settings.data_dir),
        ENVHUB_QUEUE_NAME=settings.queue_name,
        ENVHUB_BASE_URL=f"http://localhost:{port}",
        ENVHUB_ALLOW_LOCAL_REPOS="true",
        ENVHUB_RECONCILE_INTERVAL="1",
        ENVHUB_GITHUB_DEBOUNCE_SECONDS=str(debounce),
    )
    return env


@contextlib.contextmanager
def processes(env: dict[str, str], port: int, workers: int, logs: Path) -> Iterator[None]:
    procs: list[subprocess.Popen[bytes]] = []
    argv = [sys.executable, "-m", "granian", "--interface", "asgi", "--factory", "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--workers", "1", "--log-level", "warning", "bench.servers:wired_api"]
    with (logs / "server.log").open("wb") as out:
        procs.append(subprocess.Popen(argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT))
    with (logs / "workers.log").open("wb") as out:
        for _ in range(workers):
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "envhub.launcher", "worker"],
                    env=env,
                    cwd=logs,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
    try:
        wait_port(port, procs[0])
        time.sleep(3)  # the workers register with the queue
        yield
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


# -- one pull request's life -------------------------------------------------------------------


class Sender:
    def __init__(self, base: str, secret: str) -> None:
        self.http = httpx.Client(base_url=base, timeout=30)
        self.secret = secret

    def send(self, action: str, pull: dict[str, Any]) -> None:
        payload = {
            "action": action,
            "number": pull["number"],
            "pull_request": pull,
            "repository": {"full_name": REPOSITORY, "id": 1},
            "sender": PAYLOAD,
        }
        body = json.dumps(payload).encode()
        digest = hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        answer = self.http.post(
            "/webhooks/github",
            content=body,
            headers={
                "Content-Type": "application/json",
                "X-GitHub-Event": "pull_request",
                "X-GitHub-Delivery": str(uuid.uuid4()),
                "X-Hub-Signature-256": f"sha256={digest}",
            },
        )
        if answer.status_code != 202:
            raise RuntimeError(f"webhook answered {answer.status_code}: {answer.text}")


def _runs(comment: Callable[[], str], sha: str) -> Callable[[], bool]:
    return lambda: sha[:12] in comment() and "Ready" in comment()


def wait(check: Callable[[], bool], what: str, timeout: float = 120) -> float:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.02)
    return time.monotonic()


def lifecycle(stub: GithubStub, sender: Sender, repo: Repo, number: int) -> tuple[float, float, Counter[str]]:
    """One pull request: opened, three pushes, closed. (to first comment, to ready, calls by kind)."""
    first = repo.commit(f"pull request {number}, commit 1")
    pull = stub.open_pull(REPOSITORY, number=number, head_sha=first)
    calls_before = len(stub.calls)

    def comment() -> str:
        bodies = [c["body"] for c in stub.comments_on(REPOSITORY, number)]
        if len(bodies) > 1:
            raise RuntimeError(f"{len(bodies)} comments on pull request {number}")
        return bodies[0] if bodies else ""

    started = time.monotonic()
    sender.send("opened", pull)
    commented = wait(lambda: comment() != "", "the first comment")
    ready = wait(lambda: "Ready" in comment() and "http://" in comment(), "the comment to say ready")
    for n in range(2, 5):
        sha = repo.commit(f"pull request {number}, commit {n}")
        stub.push(REPOSITORY, number, sha)
        sender.send("synchronize", stub.repos[REPOSITORY].pulls[number])
        wait(_runs(comment, sha), f"commit {n} ready", timeout=180)
    stub.close_pull(REPOSITORY, number)
    sender.send("closed", stub.repos[REPOSITORY].pulls[number])
    wait(lambda: "Deleted" in comment(), "the comment to say deleted")
    time.sleep(1.5)  # let the last Deployment status go out
    kinds: Counter[str] = Counter()
    for call in stub.calls[calls_before:]:
        if call.path == "/rate_limit":
            continue
        kind = (
            "comment"
            if "/comments" in call.path
            else "deployment"
            if "/deployments" in call.path
            else "other"
        )
        kinds[f"{call.method} {kind}"] += 1
    return commented - started, ready - started, kinds


# -- floors ------------------------------------------------------------------------------------


def github_call_floor(stub: GithubStub, samples: int) -> list[float]:
    """One comment made through envhub's GitHub client: the least a comment costs."""
    client = GithubClient(
        GithubAccess(stub.api_url, "token", stub.add_token(REPOSITORY)), REPOSITORY, max_wait=0
    )
    number = stub.open_pull(REPOSITORY, number=10_000)["number"]
    times = []
    for _ in range(samples):
        started = time.monotonic()
        client.create_comment(number, "floor")
        times.append(time.monotonic() - started)
    client.close()
    # Closed before envhub's workers start: their reconciler would otherwise catch the open
    # pull request up as a lost "opened" and deploy it beside the measured ones.
    stub.close_pull(REPOSITORY, number)
    return times


# -- the report --------------------------------------------------------------------------------


@dataclass
class Measured:
    """One runtime's run: seconds from each ``opened`` delivery, floors, GitHub calls by kind."""

    setup: RuntimeSetup
    comment: list[float]
    ready: list[float]
    api: list[float]
    bare: list[float]
    calls: list[Counter[str]]
    load: float  # 1-minute load average as its last pull request closed


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def report(measured: Measured, workers: int) -> None:
    print()
    print(
        f"pull requests, GitHub on loopback, {measured.setup.where}, {workers} worker(s); "
        f"load {measured.load:.2f}"
    )
    print()
    print(
        f"{'measure':<50} {'n':>4} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'target':>8} {'p50/floor':>10}"
    )
    rows = [
        ("floor: one GitHub API call (PyGithub)", measured.api, "", None),
        ("webhook sent -> first PR comment", measured.comment, "< 1000", measured.api),
        (f"floor: {measured.setup.name} runtime deploys the app alone", measured.bare, "", None),
        ("webhook sent -> comment says ready, with URL", measured.ready, "< 3000", measured.bare),
    ]
    for name, values, target, floor in rows:
        ratio = f"{p(values, 50) / p(floor, 50):.1f}x" if floor else "1.0x"
        figures = " ".join(f"{p(values, q) * 1000:>8.0f}" for q in (50, 90, 99))
        print(f"{name:<50} {len(values):>4} {figures} {target:>8} {ratio:>10}")
    print()
    total: Counter[str] = Counter()
    for kinds in measured.calls:
        total.update(kinds)
    per = {kind: count / len(measured.calls) for kind, count in sorted(total.items())}
    totals = [sum(kinds.values()) for kinds in measured.calls]
    print("GitHub API calls per pull request (opened, three pushes, closed):")
    for kind, count in per.items():
        print(f"  {kind:<24} {count:>5.1f}")
    print(f"  {'total':<24} {sum(per.values()):>5.1f}  (from {min(totals)} to {max(totals)})")


# -- one runtime's run -------------------------------------------------------------------------


def measure(
    setup: RuntimeSetup, repo: Repo, postgres: PostgresServer, workdir: Path, args: argparse.Namespace
) -> Measured:
    """A world of its own for ``setup`` (database, Redis, GitHub stub, server, workers), then the PRs."""
    (workdir / "redis").mkdir()
    with github_stub() as stub, private_redis(workdir / "redis") as redis:
        port = free_port()
        settings = Settings(
            database_url=postgres.create_database(f"envhub_bench_{setup.name}"),
            redis_url=redis.url,
            data_dir=workdir / "data",
            queue_name="bench",
            base_url=f"http://localhost:{port}",
            allow_local_repos=True,
            **setup.settings,
        )
        with override_settings(settings):
            wire_adapters()
            migrate(settings)
            _, secret = seed(settings, stub, setup)
            print(f"{setup.name}: floors ...", flush=True)
            api = github_call_floor(stub, 20)
            bare = runtime_floor(setup, settings, repo.commit("floor"), 3)
        engine_for(settings.database_url).dispose()
        env = {**environ(settings, port, args.debounce), **setup.environ()}
        with processes(env, port, args.workers, workdir):
            sender = Sender(f"http://localhost:{port}", secret)
            comment, ready, calls = [], [], []
            for number in range(1, args.pull_requests + 1):
                print(f"{setup.name}: pull request {number} ...", flush=True)
                to_comment, to_ready, kinds = lifecycle(stub, sender, repo, number)
                comment.append(to_comment)
                ready.append(to_ready)
                calls.append(kinds)
            load = os.getloadavg()[0]
    return Measured(setup, comment, ready, api, bare, calls, load)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pull-requests", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--debounce", type=float, default=1.0, help="ENVHUB_GITHUB_DEBOUNCE_SECONDS")
    parser.add_argument(
        "--runtimes",
        type=_runtimes,
        default=RUNTIMES,
        help=f"comma-separated, from {','.join(RUNTIMES)} (default: all)",
    )
    args = parser.parse_args()

    results: list[Measured] = []
    with (
        tempfile.TemporaryDirectory(prefix="envhub-bench-pr-") as scratch,
        private_postgres() as postgres,
        _reported(results, args.workers),
    ):
        for name in args.runtimes:
            workdir = Path(scratch) / name
            workdir.mkdir()
            repo = Repo(workdir / "repo")
            if name == "local":
                results.append(measure(local(repo.path), repo, postgres, workdir, args))
                continue
            with load_cluster_module().TestCluster() as cluster:
                print(f"test cluster up in {cluster.started_in:.1f}s", flush=True)
                results.append(measure(kubernetes(cluster.kubeconfig), repo, postgres, workdir, args))


@contextlib.contextmanager
def _reported(results: list[Measured], workers: int) -> Iterator[None]:
    """The tables at the end, also of the runtimes measured before one failed."""
    try:
        yield
    finally:
        for measured in results:
            report(measured, workers)


def _runtimes(value: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(name.strip() for name in value.split(",") if name.strip()))
    unknown = set(names) - set(RUNTIMES)
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(RUNTIMES)}, not {value!r}")
    return names


if __name__ == "__main__":
    main()
