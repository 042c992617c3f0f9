"""Provisioning benchmark: N environments requested at once, on the test cluster, with 1 or 2 workers.

    .venv/bin/python bench/provision.py --sizes 1,10,50 --workers 1,2

For every (workers, size) pair it starts that many real ``python -m
envhub.launcher worker`` processes (Kubernetes runtime, production defaults for the
reconciler), asks the services for ``size`` environments back to back, and
measures, with ``time.monotonic()``, the time from each request to the moment
the database shows the environment ``ready``. Then it clears the cluster so
the next scenario starts quiet: by default straight through the API, all
namespaces at once; with ``--teardown envhub`` through the services and the
workers, measuring request-to-``deleted`` too (the namespace controller takes
~10 s to finalize each namespace; no worker waits for it) and, asked for just
after all the deletes, one more environment's request-to-ready: what a burst of
teardowns costs the next person who wants an environment.

Requests to the apiserver are counted on the client side: the workers run
with ``ENVHUB_KUBE_REQUEST_LOG`` (see ``envhub/runtime/kubernetes/client.py``),
which appends one JSON line per request (process, thread, verb, path). Job
requests are attributed to the environment whose namespace they touch (jobs
left over from an earlier scenario are reported apart); discovery and the
reconciler/watch threads are reported apart too. The report gives requests
per environment (distribution, and by request for every scenario), flags
requests that read back what the same job had just written and requests that
repeat (polls, re-opened watches), and the load average around each scenario:
on a shared machine, latency is only comparable at similar load.

Needs the test cluster binaries (tests/cluster/build.sh). Uses PostgreSQL on
127.0.0.1:5432 when it answers (a throwaway database), else SQLite, and a
redis-server of its own on a free port.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "cluster")]

import psutil  # noqa: E402
import psycopg  # noqa: E402
from cluster import TestCluster  # noqa: E402
from kubernetes import client  # noqa: E402
from redis import Redis  # noqa: E402
from rq import Queue, Worker  # noqa: E402
from sqlmodel import Session, col, select  # noqa: E402

from bench.kube_requests import Request, flag, read_requests, table  # noqa: E402
from envhub.config import Settings, override_settings  # noqa: E402
from envhub.domain.kube.render import render_environment  # noqa: E402
from envhub.domain.phases import Phase  # noqa: E402
from envhub.domain.principals import Principal  # noqa: E402
from envhub.domain.specs import EnvironmentSpec, EnvironmentTarget  # noqa: E402
from envhub.domain.workloads import ContainerService  # noqa: E402
from envhub.launcher import migrate, redis_binary  # noqa: E402
from envhub.models import Environment, Membership, Role, Team, User  # noqa: E402
from envhub.models.db import engine_for  # noqa: E402
from envhub.queue.redis_queue import SERIALIZER, RedisJobQueue  # noqa: E402
from envhub.runtime.local.processes import free_port  # noqa: E402
from envhub.services.environments import create_environment, delete_environment  # noqa: E402
from envhub.services.projects import create_project  # noqa: E402
from envhub.wiring import install as wire_adapters  # noqa: E402
from tests.support.tools import kube_tools  # noqa: E402

PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"
LOOP_IDS = 900_000  # the kubectl loop's environment ids: far from the database's
SERVICE = {"name": "web", "image": "busybox", "command": ["sleep", "3600"], "ports": [8080]}


# -- infrastructure ----------------------------------------------------------------------


@contextlib.contextmanager
def database(workdir: Path) -> Iterator[str]:
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            name = f"envhub_bench_{os.getpid()}"
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error:
        yield f"sqlite:///{workdir / 'bench.db'}"
        return
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    try:
        yield url
    finally:
        engine_for(url).dispose()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(Exception):
                if Redis.from_url(url).ping():
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


class WorkerPool:
    """Real worker processes, each in its own session so a stop takes its reconciler process too."""

    def __init__(self, settings: Settings, kubeconfig: Path, log_dir: Path) -> None:
        self.settings = settings
        self.kubeconfig = kubeconfig
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, count: int, request_log: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ENVHUB_")}
        env.update(
            PYTHONPATH=str(ROOT),
            PYTHONUNBUFFERED="1",
            ENVHUB_DATABASE_URL=self.settings.database_url,
            ENVHUB_REDIS_URL=self.settings.redis_url,
            ENVHUB_DATA_DIR=str(self.settings.data_dir),
            ENVHUB_QUEUE_NAME=self.settings.queue_name,
            ENVHUB_RUNTIME="kubernetes",
            ENVHUB_KUBECONFIG=str(self.kubeconfig),
            ENVHUB_KUBE_READY_TIMEOUT="120",
            ENVHUB_KUBE_REQUEST_LOG=str(request_log),
        )
        with (self.log_dir / "workers.log").open("ab") as log:
            for _ in range(count):
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "envhub.launcher", "worker"],
                        cwd=self.log_dir,
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        connection = Redis.from_url(self.settings.redis_url)
        queue = Queue(self.settings.queue_name, connection=connection, serializer=SERIALIZER)
        deadline = time.monotonic() + 120
        while len(Worker.all(queue=queue)) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers did not start; see {self.log_dir / 'workers.log'}")
            time.sleep(0.1)

    def memory(self) -> list[int]:
        """Resident memory of each worker process (its jobs run in it), in bytes."""
        sizes = []
        for proc in self.procs:
            with contextlib.suppress(psutil.Error):
                sizes.append(psutil.Process(proc.pid).memory_info().rss)
        return sizes

    def stop(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        self.procs.clear()
        connection = Redis.from_url(self.settings.redis_url)
        for worker in Worker.all(connection=connection):  # forget dead registrations
            with contextlib.suppress(Exception):
                worker.register_death()


# -- one scenario ------------------------------------------------------------------------


@dataclass
class Result:
    workers: int
    size: int
    ready: list[float]
    deleted: list[float]
    failed: list[str]
    wall: float
    job_requests: dict[int, list[Request]]
    discovery: list[Request]
    background: list[Request]
    background_seconds: float
    other_jobs: list[Request]
    load: tuple[float, float]  # 1-minute load average before and after the scenario
    memory: list[int]  # each worker's resident memory once every environment was ready (bytes)
    # Request to ready of one environment asked for just after the scenario's deletes (--teardown envhub).
    ready_in_teardown: float | None = None


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def wait_all(
    engine: object, ids: dict[int, float], phase: Phase, timeout: float
) -> tuple[dict[int, float], list[str]]:
    """Monotonic time each environment was first seen in ``phase``; failures by message."""
    seen: dict[int, float] = {}
    failed: list[str] = []
    deadline = time.monotonic() + timeout
    while len(seen) + len(failed) < len(ids) and time.monotonic() < deadline:
        with Session(engine) as session:  # type: ignore[arg-type]
            rows = session.exec(select(Environment).where(col(Environment.id).in_(list(ids))))
            now = time.monotonic()
            for row in rows:
                assert row.id is not None
                if row.id in seen or any(f.startswith(f"{row.id}:") for f in failed):
                    continue
                if row.phase is phase:
                    seen[row.id] = now
                elif row.phase is Phase.failed:
                    failed.append(f"{row.id}: {row.error_code}: {row.message}")
        time.sleep(0.1)
    missing = set(ids) - set(seen) - {int(f.split(":")[0]) for f in failed}
    failed += [f"{env_id}: not {phase.value} after {timeout:.0f}s" for env_id in sorted(missing)]
    return seen, failed


def clear_cluster(admin: client.CoreV1Api, engine: object, ids: list[int], timeout: float) -> None:
    """Delete every envhub namespace at once, wait until they are gone, mark the rows deleted."""
    selector = "app.kubernetes.io/managed-by=envhub"
    for namespace in admin.list_namespace(label_selector=selector).items:
        with contextlib.suppress(client.ApiException):
            admin.delete_namespace(namespace.metadata.name)
    deadline = time.monotonic() + timeout
    while admin.list_namespace(label_selector=selector).items:
        if time.monotonic() > deadline:
            raise RuntimeError("namespaces still terminating")
        time.sleep(0.5)
    with Session(engine) as session:  # type: ignore[arg-type]
        for row in session.exec(select(Environment).where(col(Environment.id).in_(ids))):
            row.phase, row.desired_state = Phase.deleted, "absent"
            session.add(row)
        session.commit()


def run_scenario(
    *,
    settings: Settings,
    pool: WorkerPool,
    actor: Principal,
    team_id: int,
    workers: int,
    size: int,
    workdir: Path,
    timeout: float,
    teardown: str,
    admin: client.CoreV1Api,
) -> Result:
    engine = engine_for(settings.database_url)
    queue = RedisJobQueue(settings.redis_url, name=settings.queue_name)
    request_log = workdir / f"requests-w{workers}-n{size}.jsonl"
    request_log.unlink(missing_ok=True)
    pool.start(workers, request_log)
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    requested: dict[int, float] = {}
    with Session(engine, expire_on_commit=False) as session:
        project = create_project(
            session=session,
            actor=actor,
            team_id=team_id,
            name=f"bench-w{workers}-n{size}",
            workloads={"services": [SERVICE]},
        )
        assert project.id is not None
        for index in range(size):
            before = time.monotonic()
            env = create_environment(
                session=session, actor=actor, queue=queue, project_id=project.id, name=f"env-{index}"
            )
            assert env.id is not None
            requested[env.id] = before
    ready_at, failed = wait_all(engine, requested, Phase.ready, timeout)
    wall = time.monotonic() - started
    memory = pool.memory()
    provisioned = time.monotonic()
    load_after = os.getloadavg()[0]

    deleted: list[float] = []
    delete_failed: list[str] = []
    ready_in_teardown: float | None = None
    if teardown == "envhub":  # through the services and the workers, measured
        deleting: dict[int, float] = {}
        with Session(engine, expire_on_commit=False) as session:
            for env_id in requested:
                deleting[env_id] = time.monotonic()
                delete_environment(session=session, actor=actor, queue=queue, environment_id=env_id)
            asked = time.monotonic()
            probe = create_environment(
                session=session, actor=actor, queue=queue, project_id=project.id, name="after-deletes"
            )
            assert probe.id is not None
        probe_ready, probe_failed = wait_all(engine, {probe.id: asked}, Phase.ready, timeout)
        if probe.id in probe_ready:
            ready_in_teardown = probe_ready[probe.id] - asked
        with Session(engine, expire_on_commit=False) as session:
            deleting[probe.id] = time.monotonic()
            delete_environment(session=session, actor=actor, queue=queue, environment_id=probe.id)
        deleted_at, delete_failed = wait_all(engine, deleting, Phase.deleted, timeout)
        deleted = [deleted_at[i] - deleting[i] for i in deleted_at if i != probe.id]
        delete_failed += [f"after the deletes: {f}" for f in probe_failed]
        pool.stop()
    else:  # straight to the cluster, all at once: only to leave it quiet for the next scenario
        pool.stop()
        clear_cluster(admin, engine, list(requested), timeout)

    requests = [r for r in read_requests(request_log) if r.start < provisioned]
    jobs = sorted((r for r in requests if r.by_job), key=lambda r: r.start)
    background = [r for r in requests if not r.by_job]
    # A worker runs its jobs one after another: a request that names no environment belongs to
    # the job of the last one its process named.
    current: dict[int, int] = {}
    per_env: dict[int, list[Request]] = defaultdict(list)
    discovery: list[Request] = []
    other_jobs: list[Request] = []
    for request in jobs:
        env_id = request.environment()
        if env_id is not None:
            current[request.pid] = env_id
        if request.shape()[0] == "discover":
            discovery.append(request)
        elif current.get(request.pid) in requested:
            per_env[current[request.pid]].append(request)
        else:  # a job of an environment of an earlier scenario, re-driven or late
            other_jobs.append(request)
    return Result(
        workers=workers,
        size=size,
        ready=[ready_at[i] - requested[i] for i in ready_at],
        deleted=deleted,
        failed=failed + [f"teardown {f}" for f in delete_failed],
        wall=wall,
        job_requests=dict(per_env),
        discovery=discovery,
        background=background,
        background_seconds=provisioned - started,
        other_jobs=other_jobs,
        load=(load_before, load_after),
        memory=memory,
        ready_in_teardown=ready_in_teardown,
    )


# -- the baseline: a kubectl loop ------------------------------------------------------------


@dataclass
class Loop:
    """A sequential ``kubectl apply --server-side`` loop over the same objects, for ``size`` environments."""

    size: int
    applied: float  # seconds from the loop's start until the last environment's objects are applied
    ready: float  # ... until every environment's Deployments are Available
    one: float  # the first environment alone: its apply, then its wait, as one loop iteration


def kubectl_loop(size: int, kubectl: Path, kubeconfig: Path, timeout: float) -> Loop:
    """What a person would script: the objects envhub's job applies to each environment (rendered by
    envhub's own renderer: namespace, quota, limits, network policies, RBAC, Service, Deployment),
    one ``kubectl apply --server-side`` per environment, one after another; then ``kubectl wait``
    until each namespace's Deployments are Available. The first environment is waited for before
    the others are applied, which gives one environment's time on its own."""
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    spec = EnvironmentSpec(services=(ContainerService.model_validate(SERVICE),))
    namespaces = []
    started = time.monotonic()
    one = 0.0
    for index in range(size):
        target = EnvironmentTarget(
            id=LOOP_IDS + index, name=f"loop-{index}", project=f"loop-n{size}", team="bench",
            generation=1, spec=spec,
        )  # fmt: skip
        objects = render_environment(target, is_namespaced=lambda _api_version, _kind: True)
        namespace = str(objects[0]["metadata"]["name"])
        namespaces.append(namespace)
        listing = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
        subprocess.run(
            [str(kubectl), "apply", "--server-side", "--field-manager", "loop", "-f", "-"],
            input=listing, env=env, text=True, capture_output=True, check=True,
        )  # fmt: skip
        if index == 0:
            _wait_available(kubectl, env, namespace, timeout)
            one = time.monotonic() - started
    applied = time.monotonic() - started
    for namespace in namespaces[1:]:
        _wait_available(kubectl, env, namespace, timeout)
    return Loop(size=size, applied=applied, ready=time.monotonic() - started, one=one)


def _wait_available(kubectl: Path, env: dict[str, str], namespace: str, timeout: float) -> None:
    subprocess.run(
        [str(kubectl), "wait", "-n", namespace, "deployment", "--all", "--for=condition=Available",
         f"--timeout={int(timeout)}s"],
        env=env, capture_output=True, check=True,
    )  # fmt: skip


# -- report ------------------------------------------------------------------------------


def report(results: list[Result], loops: dict[int, Loop]) -> str:
    lines = ["", "Request to ready (seconds, time.monotonic(), as measured) and apiserver requests", ""]
    rows = []
    for r in results:
        counts = [float(len(v)) for v in r.job_requests.values()] or [0.0]
        spans = [
            max(req.start for req in reqs) - min(req.start for req in reqs)
            for reqs in r.job_requests.values()
        ]
        rows.append(
            [
                f"{r.workers}",
                f"{r.size}",
                f"{percentile(r.ready, 0.5):.2f}",
                f"{percentile(r.ready, 0.95):.2f}",
                f"{max(r.ready, default=float('nan')):.2f}",
                f"{r.wall:.2f}",
                f"{statistics.mean(counts):.1f}",
                f"{percentile(counts, 0.5):.0f}/{percentile(counts, 0.95):.0f}/{max(counts):.0f}",
                f"{percentile(spans, 0.5):.2f}",
                f"{len(r.discovery)}",
                f"{len(r.background)}",
                f"{len(r.other_jobs)}",
                f"{r.load[0]:.1f}-{r.load[1]:.1f}",
                f"{percentile(r.deleted, 0.5):.1f}/{percentile(r.deleted, 0.95):.1f}" if r.deleted else "-",
                "-" if r.ready_in_teardown is None else f"{r.ready_in_teardown:.2f}",
                f"{len(r.failed)}",
                "/".join(f"{size / 2**20:.0f}" for size in r.memory) or "-",
            ]
        )
    header = (
        "workers envs p50 p95 max all_ready req/env p50/p95/max k8s_span_p50 discovery reconciler+watch "
        "other_jobs load1 deleted_p50/p95 ready_in_teardown failed worker_MiB"
    )
    lines.append(table(rows, header.split()))
    lines += [
        "",
        "p50/p95/max: request to ready; all_ready: first request to last environment ready.",
        "req/env: requests of the provisioning job(s) that touch the environment (namespace or label), mean",
        "and p50/p95/max over the scenario's environments;",
        "k8s_span: first to last apiserver request of one environment's job (the rest is queueing, DB, RQ);",
        "discovery: API discovery by the workers' jobs (all environments together); reconciler+watch: the",
        "background threads of all workers during the provisioning phase; other_jobs: requests of jobs of",
        "environments from earlier scenarios; load1: 1-minute load average before and after;",
        "worker_MiB: each worker's resident memory once all were ready (its jobs run in its own process);",
        "deleted (--teardown envhub): request to deleted, the namespace finalized; ready_in_teardown:",
        "request to ready of one more environment asked for just after all the deletes (compare with p50:",
        "a teardown holds no worker while the namespace controller finalizes its namespace).",
    ]
    lines += ["", "Beside a kubectl loop of the same objects (bench's own run, same cluster)", ""]
    rows = []
    for r in results:
        loop = loops.get(r.size)
        if loop is None:
            continue
        rows.append(
            [
                f"{r.workers}",
                f"{r.size}",
                f"{r.wall:.2f}",
                f"{loop.applied:.2f}",
                f"{loop.ready:.2f}",
                f"{r.wall / loop.ready:.2f}x",
                f"{percentile(r.ready, 0.5):.2f}",
                f"{loop.one:.2f}",
                f"{percentile(r.ready, 0.5) / loop.one:.2f}x",
            ]
        )
    lines.append(
        table(
            rows,
            [
                *("workers", "envs", "all_ready", "loop_applied", "loop_ready", "all_ready/loop"),
                *("p50", "loop_one", "p50/loop_one"),
            ],
        )
    )
    lines += [
        "",
        "loop: `kubectl apply --server-side` of each environment's objects (envhub's renderer: namespace,",
        "quota, limits, network policies, RBAC, Service, Deployment), one environment after another, then",
        "`kubectl wait` for every Deployment Available; loop_one: its first environment, applied and waited",
        "for alone. Targets (issue 15): all_ready within 2x loop_ready with 2 workers; p50 of one",
        "environment within 1.5x loop_one.",
    ]
    lines += ["", "Requests per environment, by request (mean over each scenario's environments)", ""]
    labels: dict[str, int] = {}
    for r in results:
        for reqs in r.job_requests.values():
            for req in reqs:
                verb, resource, _ns, _name = req.shape()
                labels.setdefault(f"{verb} {resource}", len(labels))
    by_request = []
    for label in labels:
        row = [label]
        for r in results:
            total = sum(
                1 for reqs in r.job_requests.values() for req in reqs if " ".join(req.shape()[:2]) == label
            )
            row.append(f"{total / max(1, len(r.job_requests)):.2f}")
        by_request.append(row)
    by_request.append(["total"] + [
        f"{sum(len(v) for v in r.job_requests.values()) / max(1, len(r.job_requests)):.2f}" for r in results
    ])  # fmt: skip
    lines.append(table(by_request, ["request"] + [f"w{r.workers}/n{r.size}" for r in results]))
    for r in results:
        for failure in r.failed[:5]:
            lines.append(f"  failed (workers={r.workers}, envs={r.size}): {failure}")

    sample = next((r for r in results if r.job_requests), None)
    if sample is not None:
        env_id, requests = sorted(sample.job_requests.items())[0]
        flags = flag(requests)
        lines += ["", f"Requests of one environment's provisioning (id {env_id}, workers={sample.workers}, "
                  f"envs={sample.size}), in order of first use", ""]  # fmt: skip
        order: dict[str, int] = {}
        counts: Counter[str] = Counter()
        for request in requests:
            verb, resource, _ns, _name = request.shape()
            label = f"{verb} {resource}"
            order.setdefault(label, len(order))
            counts[label] += 1
        rows = []
        for label in sorted(counts, key=order.__getitem__):
            notes = []
            if flags.reread[label]:
                notes.append(f"re-reads what this job wrote x{flags.reread[label]}")
            if flags.polls[label]:
                notes.append(f"repeated x{flags.polls[label]} (poll / re-opened watch)")
            if flags.waits[label]:
                notes.append("waits for the cluster")
            rows.append([label.split(" ")[0], label.split(" ", 1)[1], str(counts[label]), "; ".join(notes)])
        lines.append(table(rows, ["verb", "resource", "count", "flag"]))
        lines.append(f"  total {len(requests)}")
        background = Counter(" ".join(req.shape()[:2]) + f" [{req.thread}]" for req in sample.background)
        if background:
            lines += ["", f"Background requests in the same scenario ({sample.background_seconds:.1f}s):", ""]
            lines.append(
                table([[k, str(v)] for k, v in background.most_common()], ["request [thread]", "count"])
            )

    everything = [req for r in results for reqs in r.job_requests.values() for req in reqs]
    flags = flag(everything)
    lines += ["", "Flags over every environment of every scenario:"]
    for label, count in flags.reread.most_common():
        lines.append(f"  re-read after write: {label}: {count}")
    for label, count in flags.polls.most_common():
        lines.append(f"  repeated read:       {label}: {count}")
    if not flags.reread and not flags.polls:
        lines.append("  none")
    for label, count in flags.waits.most_common():
        lines.append(f"  (wait on a watch:    {label}: {count})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1,10,50", help="environments per scenario (comma-separated)")
    parser.add_argument("--workers", default="1,2", help="worker processes per scenario (comma-separated)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for ready/deleted")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, request logs)")
    parser.add_argument(
        "--teardown",
        choices=("direct", "envhub"),
        default="direct",
        help="between scenarios: delete namespaces directly (default), or through envhub (measured, "
        "with one more environment asked for just after the deletes)",
    )
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    worker_counts = [int(w) for w in args.workers.split(",") if w]

    workdir = Path(tempfile.mkdtemp(prefix="envhub-bench-"))
    results: list[Result] = []
    loops: dict[int, Loop] = {}
    kubectl = kube_tools().kubectl
    try:
        with TestCluster() as cluster, database(workdir) as database_url, redis_server(workdir) as redis_url:
            print(f"test cluster up in {cluster.started_in:.1f}s; database {database_url.split('@')[-1]}",
                  file=sys.stderr)  # fmt: skip
            settings = Settings(  # type: ignore[call-arg]
                _env_file=None,
                data_dir=workdir / "data",
                database_url=database_url,
                redis_url=redis_url,
                queue_name="envhub-bench",
                runtime="kubernetes",
                kubeconfig=str(cluster.kubeconfig),
            )
            with override_settings(settings):
                wire_adapters()
                migrate(settings)
                with Session(engine_for(database_url), expire_on_commit=False) as session:
                    team, user = Team(name="bench", display_name="Bench"), User(username="bench")
                    session.add(team)
                    session.add(user)
                    session.flush()
                    assert team.id is not None
                    assert user.id is not None
                    session.add(Membership(team_id=team.id, user_id=user.id, role=Role.owner))
                    session.commit()
                    actor, team_id = Principal(name="bench", user_id=user.id), team.id
                pool = WorkerPool(settings, cluster.kubeconfig, workdir)
                try:
                    for workers in worker_counts:
                        for size in sizes:
                            print(f"scenario: {workers} worker(s), {size} environment(s)...", file=sys.stderr)
                            result = run_scenario(
                                settings=settings,
                                pool=pool,
                                actor=actor,
                                team_id=team_id,
                                workers=workers,
                                size=size,
                                workdir=workdir,
                                timeout=args.timeout,
                                teardown=args.teardown,
                                admin=client.CoreV1Api(cluster.api_client()),
                            )
                            results.append(result)
                            if size not in loops:
                                print(
                                    f"baseline: a kubectl loop over {size} environment(s)...", file=sys.stderr
                                )
                                loops[size] = kubectl_loop(size, kubectl, cluster.kubeconfig, args.timeout)
                                admin = client.CoreV1Api(cluster.api_client())
                                clear_cluster(admin, engine_for(database_url), [], args.timeout)
                            print(
                                f"  ready p50 {percentile(result.ready, 0.5):.2f}s "
                                f"p95 {percentile(result.ready, 0.95):.2f}s, {len(result.failed)} failed",
                                file=sys.stderr,
                            )
                finally:
                    pool.stop()
        print(report(results, loops))
    finally:
        if args.keep:
            print(f"work folder kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 1 if any(r.failed for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
