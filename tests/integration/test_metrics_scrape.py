"""Real work, then every process's ``/metrics`` scraped over HTTP as Prometheus would.

The web app under Granian in its own process (tests/terminal/harness.py), a real
worker started with ``ENVHUB_WORKER_METRICS_PORT`` (its reconciler process on the
next port) and writing JSON logs, the test PostgreSQL and Redis, the local runtime. Someone creates an
environment through the REST API, a worker provisions it, the reconciler finds
an orphan, and a person opens a shell into the environment from the browser's
terminal protocol. Each process's figures are read before and after: the ones
that work should move have moved, in the process that did the work.
"""

from __future__ import annotations

import json
import random
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from envhub.config import Settings
from envhub.domain.phases import Phase
from envhub.models import Environment, Project
from envhub.runtime.local import LocalRuntime
from tests.support.db import fetch
from tests.support.net import port_open
from tests.support.runtime import kill_environments
from tests.support.scrape import Scrape, scrape
from tests.support.waiting import wait_for
from tests.support.workers import Workers
from tests.support.world import World
from tests.terminal.client import Term
from tests.terminal.harness import People, servers
from tests.terminal.signin import personal_token

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def two_free_ports() -> int:
    """A port whose next port is free too (the worker's and its reconciler's).

    Taken below the kernel's ephemeral range: a port the kernel hands out is
    often followed by the next one it hands out, to whichever process asks
    next, before the reconciler starts listening there.
    """
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(200):
        port = random.randrange(10_000, low - 1)
        if _bindable(port) and _bindable(port + 1):
            return port
    raise AssertionError("no two free ports in a row")


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture
def runtime(settings: Settings) -> Iterator[LocalRuntime]:
    local = LocalRuntime(settings.envs_dir)
    yield local
    kill_environments(local)


def test_figures_move_in_the_process_that_did_the_work(
    settings: Settings,
    session: Session,
    world: World,
    project: Project,
    db: Engine,
    runtime: LocalRuntime,
    tmp_path: Path,
) -> None:
    people = People(settings, session, world)
    metrics_port = two_free_ports()
    workers = Workers(
        settings,
        tmp_path,
        extra={"ENVHUB_WORKER_METRICS_PORT": str(metrics_port), "ENVHUB_LOG_FORMAT": "json"},
    )
    with servers(settings, tmp_path) as serve:
        try:
            base = serve(ENVHUB_QUEUE_NAME=settings.queue_name)
            workers.start()
            worker_url = f"http://127.0.0.1:{metrics_port}/metrics"
            reconciler_url = f"http://127.0.0.1:{metrics_port + 1}/metrics"
            wait_for(
                lambda: port_open(metrics_port) and port_open(metrics_port + 1),
                timeout=60,
                what="the worker's and the reconciler's metric ports",
                describe=workers.log_tail,
            )
            web_before, worker_before, reconciler_before = (
                scrape(f"{base}/metrics"),
                scrape(worker_url),
                scrape(reconciler_url),
            )
            run_the_work(base, people, session, world, project, db, runtime, workers)
            web, worker = scrape(f"{base}/metrics"), scrape(worker_url)
            reconciler = wait_for(
                lambda: drift_found(reconciler_url, reconciler_before),
                timeout=60,
                what="the reconciler to count the orphan it removed",
                describe=workers.log_tail,
            )
        finally:
            workers.stop_all()

    # The web: the create request by its route template, the queue read from Redis, the shell.
    create = {"route": "/api/v1/projects/{project_id}/environments", "method": "POST", "status": "2xx"}
    latency = "envhub_http_request_duration_seconds_count"
    assert web.value(latency, **create) == web_before.value(latency, **create) + 1
    assert web.value("envhub_queue_up") == 1
    assert web.value("envhub_queue_jobs", queue=settings.queue_name, state="queued") == 0  # all run
    assert web.value("envhub_terminal_sessions_open") == 1
    assert web.value("envhub_terminal_bytes_total", direction="input") > 0
    assert web.value("envhub_terminal_bytes_total", direction="output") > web_before.value(
        "envhub_terminal_bytes_total", direction="output"
    )
    # The worker ran the job: counted by kind and outcome, timed, request-to-ready observed.
    ready = {"kind": "converge_environment", "outcome": "ready"}
    assert worker_before.value("envhub_jobs_total", **ready) == 0
    assert worker.value("envhub_jobs_total", **ready) == 1
    assert worker.value("envhub_job_duration_seconds_count", kind="converge_environment") >= 1
    assert worker.value("envhub_provisioning_duration_seconds_count", kind="provision") == 1
    assert worker.value("envhub_provisioning_duration_seconds_sum", kind="provision") > 0
    # No process counts another's work: jobs are not the reconciler's, passes not the worker's.
    assert reconciler.total("envhub_jobs_total") == 0
    assert worker.total("envhub_reconciler_pass_duration_seconds_count") == 0
    assert web.total("envhub_jobs_total") == 0
    # The reconciler process: its passes timed, the orphan counted as drift.
    passes = "envhub_reconciler_pass_duration_seconds_count"
    assert reconciler.value(passes, outcome="ok") > reconciler_before.value(passes, outcome="ok")
    assert reconciler_before.value("envhub_reconciler_drift_total", kind="orphans_removed") == 0
    assert reconciler.value("envhub_reconciler_drift_total", kind="orphans_removed") == 1
    # Two processes, each with its own process figures.
    assert worker.value("process_start_time_seconds") > 0
    assert reconciler.value("process_start_time_seconds") > 0
    # ENVHUB_LOG_FORMAT=json: every line the worker and its reconciler process wrote is an object.
    lines = [json.loads(line) for line in workers.log_path.read_text().splitlines() if line.strip()]
    said = {(line["component"], line["message"]) for line in lines}
    assert ("worker", f"worker metrics on http://127.0.0.1:{metrics_port}/metrics") in said
    assert ("reconciler", f"reconciler metrics on http://127.0.0.1:{metrics_port + 1}/metrics") in said
    assert all({"time", "level", "logger", "pid"} <= line.keys() for line in lines)


def run_the_work(
    base: str,
    people: People,
    session: Session,
    world: World,
    project: Project,
    db: Engine,
    runtime: LocalRuntime,
    workers: Workers,
) -> None:
    runtime.workspace_path(4242).mkdir(parents=True)  # left behind by an environment nobody knows
    owner = personal_token(session, world.owner, ("read", "write"))
    made = httpx.post(
        f"{base}/api/v1/projects/{project.id}/environments",
        json={"name": "pr-1"},
        headers=owner.headers,
        timeout=30,
    )
    assert made.status_code == 202, made.text
    env_id = made.json()["environment"]["id"]

    def ready() -> bool:
        env = fetch(db, Environment, env_id)
        assert env is not None
        if env.phase is Phase.failed:
            raise AssertionError(f"environment failed: {env.error_code}: {env.message}\n{workers.log_tail()}")
        return env.phase is Phase.ready

    wait_for(ready, timeout=120, interval=0.2, what="the environment to be ready", describe=workers.log_tail)
    term = Term(base, env_id, auth=people.me(base))
    term.wait_control("hello")
    term.run("echo scraped-$((6*7))", "scraped-42")


def drift_found(url: str, before: Scrape) -> Scrape | None:
    page = scrape(url)
    found = page.value("envhub_reconciler_drift_total", kind="orphans_removed")
    return page if found > before.value("envhub_reconciler_drift_total", kind="orphans_removed") else None
