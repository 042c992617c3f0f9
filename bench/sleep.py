"""Idle sleep benchmark: ``python -m bench.sleep`` (``--runs 5 --rows 1000,10000``).

Two figures, each beside a baseline measured in the same run:

* **Wake on visit, local runtime and test cluster.** A small app runs under
  envhub's API app (the gateway, served as in tests) and one real worker
  process (``python -m envhub.launcher worker``). Each run puts it to sleep,
  waits until it is ``sleeping``, then sends a request to its URL through the
  gateway and polls every 50 ms until the app's own answer arrives: the time
  from the first request to the first byte of the app. The baseline is the
  same app's cold start from nothing: an environment requested through the
  services, polled the same way until its app answers. Locally the app is the
  default project command (``python3 -m http.server`` over the workspace):
  target wake p50 under 2 s. On the test cluster's control plane (a real
  kube-apiserver, etcd and controller-manager, and the test kubelet running
  pods as local processes: ``make test-cluster``) it is the same server as a
  container service, reached through the API server's service proxy as the
  ``local`` URL provider reaches it; a wake there scales the Deployment back
  and waits for its rollout, so the figure is the control plane's own path
  (no image pull, no scheduler, no real kubelet). The ratio wake / cold says
  what keeping the environment saves; ``--no-kube`` skips the cluster.
* **Idleness checks per second.** ``--rows`` development environments (ready,
  used a minute ago: nothing to do) are seeded; one pass of the reconciler's
  idleness check (``services/idleness.py``: its query and the decisions) is
  timed, beside the read every reconciler pass already makes of all live
  environments (its ``_Facts`` query): the ratio is what idle sleep adds to a
  pass.

Runs on a private PostgreSQL and redis-server of its own; the machine is
shared, so keep ``--runs`` and ``--rows`` modest and run it once.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert
from sqlalchemy import select as sa_select
from sqlmodel import Session, col

from envhub.api.app import create_api
from envhub.config import Settings, override_settings
from envhub.domain.phases import Phase
from envhub.domain.specs import EnvironmentKind, Trigger
from envhub.launcher import migrate
from envhub.models import Environment, Project
from envhub.models.base import utcnow
from envhub.models.db import engine_for
from envhub.services import idleness, ports, sleeping
from envhub.services.environments import create_environment
from envhub.services.projects import create_project
from envhub.wiring import install as wire_adapters
from tests.kube.helpers import HTTP_SERVER, KubeWorkers, load_cluster_module
from tests.support.net import free_port, machine_address
from tests.support.postgres import private_postgres
from tests.support.redis_server import private_redis
from tests.support.servers import serve_asgi
from tests.support.workers import Workers
from tests.support.world import World, make_world

POLL = 0.05
LOCAL, KUBE = "local runtime", "test cluster"


@dataclass(frozen=True, slots=True)
class Timing:
    first_answer: float  # seconds from the request to the gateway's first answer (the waking page)
    app: float  # seconds from the first request to the app's own first byte


def _p50(values: list[float]) -> float:
    return statistics.median(values)


def _until_app(client: httpx.Client, host: str, timeout: float = 120.0) -> Timing:
    """Request ``/`` through the gateway until the app answers; when its first byte came."""
    started = time.perf_counter()
    first: float | None = None
    deadline = started + timeout
    while time.perf_counter() < deadline:
        with client.stream("GET", "/", headers={"host": host}) as response:
            next(response.iter_raw(), b"")  # the first byte
            now = time.perf_counter()
            first = first if first is not None else now - started
            if response.status_code == 200:  # the gateway's own pages are 404, 502 and 503
                return Timing(first, now - started)
        time.sleep(POLL)
    raise TimeoutError(f"{host} did not answer within {timeout:.0f}s")


def _wait_phase(settings: Settings, env_id: int, phase: Phase, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with Session(engine_for(settings.database_url)) as session:
            row = session.get(Environment, env_id)
            if row is not None and row.phase is phase:
                return
            if row is not None and row.phase is Phase.failed:
                raise RuntimeError(f"environment {env_id} failed: {row.message}")
        time.sleep(POLL)
    raise TimeoutError(f"environment {env_id} was not {phase.value} within {timeout:.0f}s")


@contextmanager
def _cluster() -> Iterator[Any]:
    """The test cluster, its pods reporting this machine's address (the service proxy needs one)."""
    address = machine_address()
    if address is None:
        raise RuntimeError("the test cluster's service proxy needs a non-loopback IPv4 address here")
    with load_cluster_module().TestCluster(pod_ip=address) as cluster:
        yield cluster


@contextmanager
def _envhub(folder: Path, where: str) -> Iterator[tuple[Settings, World, Project, httpx.Client, int]]:
    """envhub's API app and one worker on ``where`` (LOCAL or KUBE), and a project of a small app."""
    with ExitStack() as stack:
        postgres = stack.enter_context(private_postgres())
        redis = stack.enter_context(private_redis(folder / "redis"))
        cluster = stack.enter_context(_cluster()) if where == KUBE else None
        database_url = postgres.create_database("bench_sleep")
        data = folder / "data"
        data.mkdir()
        runtime: dict[str, Any] = {}
        workloads = None
        if cluster is not None:
            runtime = {"runtime": "kubernetes", "kubeconfig": str(cluster.kubeconfig)}
            app = free_port()  # the test kubelet runs every pod on this machine
            web = {"name": "web", "image": "python:3.12-slim", "ports": [app]}
            workloads = {"services": [{**web, "command": [sys.executable, "-c", HTTP_SERVER, str(app)]}]}
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            data_dir=data,
            database_url=database_url,
            redis_url=redis.url,
            queue_name="envhub-bench-sleep",
            base_url="http://localhost:3000",
            **runtime,
        )
        with override_settings(settings):
            migrate(settings)
            wire_adapters()
            ports.reset()
            with Session(engine_for(database_url), expire_on_commit=False) as session:
                world = make_world(session)
                project = create_project(
                    session=session, actor=world.owner, team_id=world.acme, name="shop", workloads=workloads
                )
            workers = KubeWorkers(settings, folder) if cluster is not None else Workers(settings, folder)
            workers.start()
            try:
                with (
                    serve_asgi(create_api()) as port,
                    httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client,
                ):
                    yield settings, world, project, client, port
            finally:
                workers.stop_all()
                if cluster is None:  # the cluster's pods go with it
                    for environment_id in ports.runtime().managed_environments():
                        ports.runtime().stop(environment_id)
                ports.reset()


def measure_wake(runs: int, folder: Path, where: str = LOCAL) -> dict[str, list[float]]:
    cold: list[float] = []
    wake: list[float] = []
    page: list[float] = []
    with _envhub(folder, where) as (settings, world, project, client, port):
        assert project.id is not None

        def create(name: str) -> int:
            with Session(engine_for(settings.database_url)) as session:
                env = create_environment(
                    session=session,
                    actor=world.member,
                    queue=ports.queue(),
                    project_id=project.id or 0,
                    name=name,
                )
                assert env.id is not None
                return env.id

        def host(name: str) -> str:
            return f"{name}.shop.acme.localhost:{port}"

        for run in range(runs):  # the baseline: from nothing to the app's first byte
            started = time.perf_counter()
            create(f"cold-{run}")
            cold.append(time.perf_counter() - started + _until_app(client, host(f"cold-{run}")).app)
        dozy = create("dozy")
        _until_app(client, host("dozy"))
        _wait_phase(settings, dozy, Phase.ready)
        for _ in range(runs):
            with Session(engine_for(settings.database_url)) as session:
                sleeping.sleep_environment(
                    session=session, actor=world.member, queue=ports.queue(), environment_id=dozy
                )
            _wait_phase(settings, dozy, Phase.sleeping)
            timing = _until_app(client, host("dozy"))
            wake.append(timing.app)
            page.append(timing.first_answer)
            _wait_phase(settings, dozy, Phase.ready)
    return {"cold": cold, "wake": wake, "page": page}


def _seed(session: Session, project_id: int, rows: int) -> None:
    now = utcnow()
    recent = now - timedelta(minutes=1)
    session.execute(
        insert(Environment),
        [
            {
                "project_id": project_id,
                "name": f"e{i}",
                "kind": EnvironmentKind.development,
                "trigger": Trigger.manual,
                "phase": Phase.ready,
                "message": "",
                "spec": {},
                "desired_state": "present",
                "desired_generation": 1,
                "observed_generation": 1,
                "pinned": False,
                "created_at": now - timedelta(days=1),
                "updated_at": now,
                "last_active_at": recent,
            }
            for i in range(rows)
        ],
    )
    session.commit()


def _best_of(repeat: int, action: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - started)
    return best


def measure_checks(sizes: list[int], folder: Path) -> list[tuple[int, float, float, int]]:
    """(rows, idleness check seconds, the live-rows read's seconds, verdicts) per size."""
    found = []
    with private_postgres() as postgres:
        for size in sizes:
            url = postgres.create_database(f"bench_idle_{size}")
            settings = Settings(_env_file=None, data_dir=folder, database_url=url)  # type: ignore[call-arg]
            with override_settings(settings):
                migrate(settings)
                with Session(engine_for(url), expire_on_commit=False) as session:
                    world = make_world(session)
                    project = create_project(
                        session=session, actor=world.owner, team_id=world.acme, name="shop"
                    )
                    _seed(session, project.id or 0, size)
                    decided: list[object] = []

                    def check(session: Session = session, decided: list[object] = decided) -> None:
                        decided[:] = idleness.verdicts(idleness.candidates(session), utcnow())
                        session.commit()

                    def live(session: Session = session) -> None:
                        list(
                            session.execute(
                                sa_select(
                                    col(Environment.id),
                                    col(Environment.phase),
                                    col(Environment.desired_state),
                                    col(Environment.desired_generation),
                                    col(Environment.observed_generation),
                                    col(Environment.condition),
                                ).where(col(Environment.phase) != Phase.deleted)
                            )
                        )
                        session.commit()

                    checked = _best_of(5, check)
                    baseline = _best_of(5, live)
                    found.append((size, checked, baseline, len(decided)))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rows", default="1000,10000")
    parser.add_argument("--no-wake", action="store_true", help="only the idleness checks")
    parser.add_argument("--no-kube", action="store_true", help="no wake on the test cluster")
    args = parser.parse_args()
    sizes = [int(part) for part in args.rows.split(",") if part]
    with tempfile.TemporaryDirectory(prefix="envhub-bench-sleep-") as scratch:
        folder = Path(scratch)
        if not args.no_wake:
            places = [LOCAL] if args.no_kube else [LOCAL, KUBE]
            found = {}
            for where in places:
                place = folder / where.replace(" ", "-")
                place.mkdir()
                found[where] = measure_wake(args.runs, place, where)
            _print_wake(args.runs, found)
        checks = measure_checks(sizes, folder / "checks")
        print("\nIdleness checks in one reconciler pass (best of 5)")
        heads = ("check ms", 12), ("rows/s", 14), ("live read ms", 15), ("check/read", 12), ("verdicts", 10)
        print(f"  {'rows':>8}" + "".join(f"{name:>{width}}" for name, width in heads))
        for size, checked, baseline, verdicts in checks:
            print(
                f"  {size:>8}{checked * 1000:>12.1f}{size / checked:>14,.0f}"
                f"{baseline * 1000:>15.1f}{checked / baseline:>12.2f}{verdicts:>10}"
            )


def _print_wake(runs: int, found: dict[str, dict[str, list[float]]]) -> None:
    """The p50s of each place side by side (the local target beside its figure), then every run."""
    p50 = {where: {key: _p50(values) for key, values in times.items()} for where, times in found.items()}
    print(f"\nWake on visit ({runs} runs each, p50)")
    print(f"  {'':<42}" + "".join(f"{where:>16}" for where in found))
    rows = (
        ("cold start from nothing (baseline)", "cold", "{:14.2f} s"),
        ("first request -> waking page", "page", "{:14.3f} s"),
        ("first request -> first byte of the app", "wake", "{:14.2f} s"),
    )
    for title, key, shape in rows:
        print(f"  {title:<42}" + "".join(shape.format(p50[where][key]) for where in found))
    print(f"  {'wake / cold':<42}" + "".join(f"{p50[w]['wake'] / p50[w]['cold']:16.2f}" for w in found))
    wake = p50[LOCAL]["wake"]
    print(f"  local target: wake p50 < 2 s: {'met' if wake < 2 else 'MISSED'}")
    for where, times in found.items():
        print(f"  all, {where}: {_all(times)}")


def _all(times: dict[str, list[float]]) -> str:
    return "; ".join(
        f"{key} " + ", ".join(f"{value:.2f}" for value in values) for key, values in times.items()
    )


if __name__ == "__main__":
    main()
