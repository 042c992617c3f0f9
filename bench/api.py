"""API speed with a realistic amount of data: ``make bench-api`` (``python -m bench.api``).

Starts a private PostgreSQL (the machine's binaries, as the test suite does)
and a private redis-server, seeds envhub's database through the services with
``--environments`` environments (1,000 by default) that the benchmarking user
can see, spread over ten projects in two teams, plus a fifth as many in a
third team the user is not in (so the visibility filter has work to do), with
a mix of phases. Then it starts envhub's API app under Granian, one worker, as
the launcher runs it, and measures one request at a time (latency, not
throughput), every operation after a warm-up:

* REST: the cross-project list (first page, a page deep in the cursor chain,
  a search), a project's list, getting one environment, creating one (202,
  its provisioning job really enqueued on Redis; no worker runs it);
* MCP, through the official SDK client over streamable HTTP, one session
  as an agent keeps: the same operations as tools;
* the ``envhub`` command: ``env ls`` for the first 20 and for all of them
  (page after page), wall time of the whole process.

Every figure has a floor measured in the same run, on the same server:
``GET /healthz`` (HTTP plus one ``SELECT 1``) for REST, the ``whoami`` tool
for MCP (the token looked up, nothing else), ``envhub --version``
(interpreter and imports) for the command; the last column divides by it. What serving costs is printed next
to the speed: server CPU per request and the server's memory at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import httpx2
import psutil
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult
from sqlalchemy import update
from sqlmodel import Session, col

from bench.servers import ROOT, wait_port
from envhub.config import Settings, override_settings
from envhub.domain.phases import Phase
from envhub.domain.principals import Principal
from envhub.launcher import migrate
from envhub.models import Environment, Membership, Role, Team, User
from envhub.models.db import engine_for
from envhub.runtime.local.processes import free_port
from envhub.services import projects, tokens
from envhub.services.environments import create_environment
from envhub.wiring import install as wire_adapters
from tests.support.fakes import FakeQueue
from tests.support.postgres import private_postgres
from tests.support.redis_server import private_redis

ENVHUB = Path(sys.executable).parent / "envhub"
PROJECTS = 10
# Phases as a busy installation has them: most running, some asleep, a few broken or on their way.
PHASE_MIX = [Phase.ready] * 14 + [Phase.sleeping] * 3 + [Phase.failed, Phase.pending, Phase.updating]


# -- the world ---------------------------------------------------------------------------------


@dataclass
class Seeded:
    token: str
    projects: list[int]
    environments: list[int]  # the visible ones
    hidden: int  # environments in a team the user is not in
    seconds: float


def _person(session: Session, username: str) -> Principal:
    user = User(username=username, display_name=username.title())
    session.add(user)
    session.flush()
    assert user.id is not None
    return Principal(name=username, user_id=user.id)


def _team(session: Session, name: str, members: list[tuple[Principal, Role]]) -> int:
    team = Team(name=name, display_name=name.title())
    session.add(team)
    session.flush()
    assert team.id is not None
    for person, role in members:
        assert person.user_id is not None
        session.add(Membership(team_id=team.id, user_id=person.user_id, role=role))
    return team.id


def project_id(project: Any) -> int:
    assert project.id is not None
    return int(project.id)


def seed(database_url: str, visible: int) -> Seeded:
    """Projects and environments through the services (so every row is as envhub writes it)."""
    started = time.monotonic()
    engine = engine_for(database_url)
    with Session(engine, expire_on_commit=False) as session:
        me, colleague, stranger = (_person(session, n) for n in ("bench", "casey", "stranger"))
        teams = [
            _team(session, "platform", [(me, Role.owner), (colleague, Role.member)]),
            _team(session, "payments", [(me, Role.member), (colleague, Role.owner)]),
            _team(session, "elsewhere", [(stranger, Role.owner)]),
        ]
        session.commit()
        owned = [
            projects.create_project(
                session=session, actor=colleague if i % 2 else me, team_id=teams[i % 2], name=f"service-{i}"
            )
            for i in range(PROJECTS)
        ]
        other = projects.create_project(session=session, actor=stranger, team_id=teams[2], name="secret")
        queue = FakeQueue()  # the seeded environments' jobs are never run: their phases are set below
        ids: list[int] = []
        for n in range(visible):
            project = owned[n % PROJECTS]
            actor = colleague if n % 3 == 0 else me
            env = create_environment(
                session=session, actor=actor, queue=queue, project_id=project_id(project), name=f"pr-{n}"
            )
            assert env.id is not None
            ids.append(env.id)
        hidden = visible // 5
        for n in range(hidden):
            create_environment(
                session=session, actor=stranger, queue=queue, project_id=project_id(other), name=f"x-{n}"
            )
        for i, phase in enumerate(PHASE_MIX):
            chosen = ids[i :: len(PHASE_MIX)]
            session.execute(
                update(Environment).where(col(Environment.id).in_(chosen)).values(phase=phase.value)
            )
        session.commit()
        token = tokens.create_personal_token(
            session=session, actor=me, name="bench", scopes=["read", "write"], expires_in_days=1, via="cli"
        )
        session.commit()
        return Seeded(
            token=token.token,
            projects=[project_id(p) for p in owned],
            environments=ids,
            hidden=hidden,
            seconds=time.monotonic() - started,
        )


@contextlib.contextmanager
def envhub_api(settings: Settings, workdir: Path) -> Iterator[tuple[str, psutil.Process]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENVHUB_")}
    env.update(
        ENVHUB_DATA_DIR=str(settings.data_dir),
        ENVHUB_DATABASE_URL=settings.database_url,
        ENVHUB_REDIS_URL=settings.redis_url,
        ENVHUB_QUEUE_NAME=settings.queue_name,
        ENVHUB_BASE_URL=f"http://localhost:{port}",
    )
    argv = [sys.executable, "-m", "granian", "--interface", "asgi", "--factory", "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--workers", "1", "--log-level", "warning", "bench.servers:wired_api"]
    log = workdir / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        try:
            wait_port(port, proc)
        except RuntimeError as error:
            raise RuntimeError(f"{error}; its log:\n{log.read_text(errors='replace')}") from None
        yield f"http://localhost:{port}", psutil.Process(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- measuring ---------------------------------------------------------------------------------


@dataclass
class Row:
    face: str
    operation: str
    seconds: list[float] = field(default_factory=list)
    cpu: float = 0.0  # server CPU seconds over all samples
    floor: Row | None = None

    def percentile(self, p: float) -> float:
        ordered = sorted(self.seconds)
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def server_cpu(server: psutil.Process) -> float:
    total = 0.0
    for proc in [server, *server.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def server_rss(server: psutil.Process) -> int:
    total = 0
    for proc in [server, *server.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += proc.memory_info().rss
    return total


def measure(row: Row, server: psutil.Process, call: Callable[[int], Any], samples: int, warmup: int) -> Row:
    for i in range(warmup):
        call(-1 - i)
    before = server_cpu(server)
    for i in range(samples):
        started = time.perf_counter()
        call(i)
        row.seconds.append(time.perf_counter() - started)
    row.cpu = server_cpu(server) - before
    return row


async def measure_async(
    row: Row, server: psutil.Process, call: Callable[[int], Awaitable[Any]], samples: int, warmup: int
) -> Row:
    for i in range(warmup):
        await call(-1 - i)
    before = server_cpu(server)
    for i in range(samples):
        started = time.perf_counter()
        await call(i)
        row.seconds.append(time.perf_counter() - started)
    row.cpu = server_cpu(server) - before
    return row


def expect(answer: httpx.Response, status: int) -> Any:
    if answer.status_code != status:
        raise RuntimeError(
            f"{answer.request.method} {answer.request.url}: {answer.status_code} {answer.text}"
        )
    return answer.json()


def rest_rows(base: str, server: psutil.Process, world: Seeded, samples: int, warmup: int) -> list[Row]:
    headers = {"Authorization": f"Bearer {world.token}"}
    rows: list[Row] = []
    with httpx.Client(base_url=base, headers=headers, timeout=60) as http:
        floor = measure(
            Row("REST", "floor: GET /healthz"),
            server,
            lambda _: expect(http.get("/healthz"), 200),
            samples,
            warmup,
        )
        rows.append(floor)

        first = expect(http.get("/api/v1/environments", params={"limit": 20}), 200)
        if first["total"] != len(world.environments):
            raise RuntimeError(
                f"the list counts {first['total']} environments, not {len(world.environments)}"
            )
        cursor = first["next_cursor"]
        for _ in range(len(world.environments) // 40 - 1):  # halfway down the chain
            cursor = expect(http.get("/api/v1/environments", params={"limit": 20, "cursor": cursor}), 200)[
                "next_cursor"
            ]

        def env(i: int) -> int:
            return world.environments[(i * 7919) % len(world.environments)]

        def project(i: int) -> int:
            return world.projects[i % len(world.projects)]

        created = iter(range(10**9))
        cases: list[tuple[str, Callable[[int], Any]]] = [
            (
                "list all you see, first 20",
                lambda _: expect(http.get("/api/v1/environments", params={"limit": 20}), 200),
            ),
            (
                "list all you see, page 25 (cursor)",
                lambda _: expect(
                    http.get("/api/v1/environments", params={"limit": 20, "cursor": cursor}), 200
                ),
            ),
            (
                "list all you see, search 'pr-99'",
                lambda _: expect(http.get("/api/v1/environments", params={"limit": 20, "q": "pr-99"}), 200),
            ),
            (
                "list one project's, first 20",
                lambda i: expect(
                    http.get(f"/api/v1/projects/{project(i)}/environments", params={"limit": 20}), 200
                ),
            ),
            ("get one", lambda i: expect(http.get(f"/api/v1/environments/{env(i)}"), 200)),
            (
                "create one (202, job enqueued)",
                lambda i: expect(
                    http.post(
                        f"/api/v1/projects/{project(i)}/environments", json={"name": f"rest-{next(created)}"}
                    ),
                    202,
                ),
            ),
        ]
        for name, call in cases:
            row = measure(Row("REST", name, floor=floor), server, call, samples, warmup)
            rows.append(row)
    return rows


def _structured(result: CallToolResult, tool: str) -> Any:
    if result.is_error:
        raise RuntimeError(f"MCP tool {tool} failed: {result.content}")
    return result.structured_content


async def mcp_rows_async(
    base: str, server: psutil.Process, world: Seeded, samples: int, warmup: int
) -> list[Row]:
    headers = {"Authorization": f"Bearer {world.token}"}
    rows: list[Row] = []
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(60)) as http,
        streamable_http_client(f"{base}/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        await session.list_tools()  # the client checks structured answers against the listed schemas

        created = iter(range(10**9))

        def call(tool: str, arguments: Callable[[int], dict[str, Any]]) -> Callable[[int], Awaitable[Any]]:
            async def run(i: int) -> Any:
                return _structured(await session.call_tool(tool, arguments(i)), tool)

            return run

        def env(i: int) -> int:
            return world.environments[(i * 7919) % len(world.environments)]

        def project(i: int) -> int:
            return world.projects[i % len(world.projects)]

        # The floor: a tool call that only authenticates (the token looked up) and answers who you are.
        floor = await measure_async(
            Row("MCP", "floor: whoami"), server, call("whoami", lambda _: {}), samples, warmup
        )
        rows.append(floor)
        cases = [
            ("find_environments: all you see, first 20", call("find_environments", lambda _: {"limit": 20})),
            (
                "find_environments: search 'pr-99'",
                call("find_environments", lambda _: {"limit": 20, "query": "pr-99"}),
            ),
            (
                "list_environments: one project's, first 20",
                call("list_environments", lambda i: {"project_id": project(i), "limit": 20}),
            ),
            ("get_environment", call("get_environment", lambda i: {"environment_id": env(i)})),
            (
                "create_environment (job enqueued)",
                call(
                    "create_environment", lambda i: {"project_id": project(i), "name": f"mcp-{next(created)}"}
                ),
            ),
        ]
        for name, run in cases:
            rows.append(await measure_async(Row("MCP", name, floor=floor), server, run, samples, warmup))
    return rows


def mcp_rows(base: str, server: psutil.Process, world: Seeded, samples: int, warmup: int) -> list[Row]:
    return asyncio.run(mcp_rows_async(base, server, world, samples, warmup))


def cli_rows(base: str, server: psutil.Process, world: Seeded, runs: int, workdir: Path) -> list[Row]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENVHUB_", "KUBECONFIG"))}
    env.update(
        ENVHUB_SERVER=base,
        ENVHUB_TOKEN=world.token,
        XDG_CONFIG_HOME=str(workdir / "config"),
        PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
        ENVHUB_NO_BROWSER="1",
        COLUMNS="200",
        PYTHONPATH=str(ROOT),
    )

    def run(*args: str, check: Callable[[str], bool] = lambda _: True) -> Callable[[int], None]:
        def once(_: int) -> None:
            out = subprocess.run([str(ENVHUB), *args], env=env, capture_output=True, text=True, timeout=300)
            if out.returncode != 0 or not check(out.stdout):
                raise RuntimeError(
                    f"envhub {' '.join(args)} exited {out.returncode}: {out.stderr or out.stdout}"
                )

        return once

    everyone = len(world.environments)
    floor = measure(Row("CLI", "floor: envhub --version"), server, run("--version"), runs, 1)
    first = run("env", "ls", "-L", "20", "-o", "json", check=lambda out: len(json.loads(out)) == 20)
    # Every one you can see: the seeded ones and those the REST and MCP rows created.
    all_of_them = run("env", "ls", check=lambda out: out.count(" pr-") >= everyone)
    return [
        floor,
        measure(Row("CLI", "envhub env ls -L 20 -o json", floor=floor), server, first, runs, 1),
        measure(
            Row("CLI", f"envhub env ls (all {everyone:,}+, table)", floor=floor), server, all_of_them, runs, 1
        ),
    ]


# -- the report --------------------------------------------------------------------------------


def report(rows: list[Row], world: Seeded, rss: int, rss_start: int, visible_total: int) -> None:
    print()
    print(
        f"envhub API on PostgreSQL: {visible_total:,} environments you can see in {PROJECTS} projects "
        f"and 2 teams, {world.hidden:,} in a team you are not in; one Granian worker; "
        "one request at a time"
    )
    print(f"(seeded through the services in {world.seconds:.1f} s; load average {os.getloadavg()[0]:.2f})")
    print()
    columns = ("n", "p50 ms", "p99 ms", "p50/floor", "CPU ms/op")
    header = f"{'face':<5} {'operation':<44} " + " ".join(f"{c:>9}" for c in columns)
    print(header)
    print("-" * len(header))
    for row in rows:
        p50, p99 = row.percentile(50) * 1000, row.percentile(99) * 1000
        ratio = f"{row.percentile(50) / row.floor.percentile(50):.1f}x" if row.floor else "1.0x"
        cpu = row.cpu * 1000 / len(row.seconds)
        figures = (str(len(row.seconds)), f"{p50:.1f}", f"{p99:.1f}", ratio, f"{cpu:.1f}")
        print(f"{row.face:<5} {row.operation:<44} " + " ".join(f"{f:>9}" for f in figures))
    print()
    print(
        f"server memory (RSS): {rss_start / 2**20:.0f} MiB after start-up, {rss / 2**20:.0f} MiB at the end"
    )
    print("CLI rows: wall time of the whole command; its CPU ms/op column is the server's share only.")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--environments", type=int, default=1000, help="visible environments to seed")
    parser.add_argument("--samples", type=int, default=200, help="requests per REST/MCP operation")
    parser.add_argument("--cli-runs", type=int, default=10, help="runs per CLI command")
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="envhub-bench-api-") as scratch, private_postgres() as postgres:
        workdir = Path(scratch)
        redis_dir = workdir / "redis"
        redis_dir.mkdir()
        with private_redis(redis_dir) as redis:
            database_url = postgres.create_database("envhub_bench")
            settings = Settings(
                database_url=database_url,
                redis_url=redis.url,
                data_dir=workdir / "data",
                queue_name="bench",
            )
            with override_settings(settings):
                wire_adapters()
                migrate(settings)
                print(f"seeding {args.environments:,} environments ...", flush=True)
                world = seed(database_url, args.environments)
            engine_for(database_url).dispose()
            with envhub_api(settings, workdir) as (base, server):
                rss_start = server_rss(server)
                print("measuring REST ...", flush=True)
                rows = rest_rows(base, server, world, args.samples, args.warmup)
                print("measuring MCP ...", flush=True)
                rows += mcp_rows(base, server, world, args.samples, args.warmup)
                print("measuring the envhub command ...", flush=True)
                rows += cli_rows(base, server, world, args.cli_runs, workdir)
                report(rows, world, server_rss(server), rss_start, args.environments)


if __name__ == "__main__":
    main()
