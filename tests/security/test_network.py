"""Attack: an environment reaches envhub's own services, or other environments, over the network.

Every local environment runs in a network namespace of its own (real
bubblewrap, real slirp4netns with ``--disable-host-loopback``). From inside,
through its command and through a terminal shell, it tries envhub's port,
envhub's Redis and PostgreSQL, and another environment's port, at 127.0.0.1
(its own loopback), at 10.0.2.2 (slirp4netns's way to the host's loopback)
and at 10.0.2.3 (slirp4netns's alias for the host's resolver, which on many
machines is on the host's loopback). All fail, while the host itself reaches each of them (so the
failure is the boundary, not a service that is down) and a server on this
machine's non-loopback address answers the environment (outbound traffic
works). The app has no host port; envhub's gateway and health check still
reach it, over HTTP and WebSocket. Without slirp4netns the environment has
no network at all, and its status and page say so.
"""

from __future__ import annotations

import http.server
import os
import secrets
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy.engine import make_url
from sqlmodel import Session
from websockets.sync.client import connect as ws_connect

from envhub.api.app import create_api
from envhub.config import Settings
from envhub.domain.phases import Phase
from envhub.models import Environment, Project
from envhub.runtime.base import Endpoint, RuntimeState, RuntimeStatus
from envhub.runtime.local import LocalRuntime
from envhub.runtime.local.network import nameservers
from envhub.services import ports
from envhub.services.environment_views import environment_detail
from envhub.services.observation import record_status
from tests.support.components import require
from tests.support.inside import (
    host_can_connect,
    host_listeners,
    outside_address,
    probe_command,
    probe_in_shell,
    probe_result,
    tree_pids,
)
from tests.support.runtime import RecordingProgress, endpoint_get, kill_environments, make_target
from tests.support.servers import serve_asgi

pytestmark = pytest.mark.slow

SLIRP_HOST_LOOPBACK = "10.0.2.2"  # where slirp4netns would forward to the host's 127.0.0.1
SLIRP_DNS = "10.0.2.3"  # slirp4netns forwards any port here to the host's resolver (often on loopback)

# A tiny app for inside the sandbox (standard library only): plain HTTP, and a
# WebSocket echo at /ws, so the gateway's WebSocket relay is tried for real.
WS_APP = r"""
import asyncio, base64, hashlib, os
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
async def frame(reader):
    head = await reader.readexactly(2)
    size = head[1] & 0x7F
    if size == 126:
        size = int.from_bytes(await reader.readexactly(2), "big")
    elif size == 127:
        size = int.from_bytes(await reader.readexactly(8), "big")
    mask = await reader.readexactly(4)
    data = bytearray(await reader.readexactly(size))
    for i in range(size):
        data[i] ^= mask[i % 4]
    return head[0] & 0x0F, bytes(data)
async def handle(reader, writer):
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    lines = head.split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:] if l)}
    if headers.get("upgrade", "").lower() != "websocket":
        body = b"hello from inside"
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
        await writer.drain(); writer.close(); return
    accept = base64.b64encode(hashlib.sha1(headers["sec-websocket-key"].encode() + GUID).digest())
    writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
    while True:
        opcode, data = await frame(reader)
        if opcode == 8:
            writer.write(b"\x88\x00"); await writer.drain(); writer.close(); return
        reply = b"echo: " + data
        writer.write(bytes([0x81, len(reply)]) + reply)
        await writer.drain()
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", int(os.environ["PORT"]))
    async with server:
        await server.serve_forever()
asyncio.run(main())
"""


@dataclass
class Outside:
    url: str
    token: str


@pytest.fixture
def outside() -> Iterator[Outside]:
    """An HTTP server on this machine's non-loopback address: 'the internet' as far as the test goes."""
    token = secrets.token_hex(8)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = token.encode()
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return

    server = http.server.ThreadingHTTPServer((outside_address(), 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    yield Outside(url=f"http://{outside_address()}:{port}/", token=token)
    server.shutdown()
    thread.join(10)


@dataclass
class Host:
    """envhub's own services on the host's loopback, as an environment would aim at them."""

    envhub_port: int
    redis: tuple[str, int]
    postgres: tuple[str, int]


@pytest.fixture
def host(settings: Settings, database_url: str, redis_url: str) -> Iterator[Host]:
    database = make_url(database_url)
    assert database.get_backend_name() == "postgresql", (
        f"these tests need PostgreSQL (envhub's database on loopback); the suite gave {database_url!r}"
    )
    redis = urlsplit(redis_url)
    with serve_asgi(create_api()) as port:
        yield Host(
            envhub_port=port,
            redis=(redis.hostname or "127.0.0.1", redis.port or 6379),
            postgres=(database.host or "127.0.0.1", database.port or 5432),
        )


@pytest.fixture
def runtime(settings: Settings) -> Iterator[LocalRuntime]:
    require("bwrap")
    require("slirp4netns")
    rt = ports.runtime()
    assert isinstance(rt, LocalRuntime)
    yield rt
    kill_environments(rt)


def _rows(session: Session, project: Project, *names: str) -> list[int]:
    assert project.id is not None
    ids = []
    for name in names:
        row = Environment(project_id=project.id, name=name, phase=Phase.ready, message="Ready")
        session.add(row)
        session.flush()
        assert row.id is not None
        ids.append(row.id)
    session.commit()
    return ids


def _serve_app(runtime: LocalRuntime, environment_id: int, name: str) -> Endpoint:
    target = make_target(environment_id, name=name, command='python3 -c "$APP"', env={"APP": WS_APP})
    status = runtime.apply(target, progress=RecordingProgress())
    assert status.endpoint is not None
    return status.endpoint


def _plan(host: Host, other: Endpoint, outside: Outside) -> dict[str, object]:
    tcp: dict[str, tuple[str, int]] = {}
    for address in ("127.0.0.1", SLIRP_HOST_LOOPBACK, SLIRP_DNS):
        tcp[f"envhub@{address}"] = (address, host.envhub_port)
        tcp[f"redis@{address}"] = (address, host.redis[1])
        tcp[f"postgres@{address}"] = (address, host.postgres[1])
        tcp[f"other-env@{address}"] = (address, other.port)
    # The other environment's front door, by its host path (envhub's data folder).
    unix = {"other-env-socket": str(other.unix_socket)}
    return {
        "tcp": tcp,
        "unix": unix,
        "http": {"outside": outside.url},
        "read": {"resolv.conf": "/etc/resolv.conf"},
    }


def test_an_environment_reaches_nothing_on_the_host_loopback_but_the_outside_world(
    session: Session, project: Project, runtime: LocalRuntime, host: Host, outside: Outside
) -> None:
    other_id, probing_id = _rows(session, project, "other", "prober")
    other = _serve_app(runtime, other_id, "other")

    # The host reaches every target: whatever fails from inside fails because of the boundary.
    for name, port in (
        ("envhub", host.envhub_port),
        ("redis", host.redis[1]),
        ("postgres", host.postgres[1]),
    ):
        assert host_can_connect("127.0.0.1", port), f"{name} is not answering on the host; the test needs it"
    assert httpx.get(outside.url, timeout=10, trust_env=False).text == outside.token

    plan = _plan(host, other, outside)
    command, env = probe_command(plan)
    progress = RecordingProgress()
    status = runtime.apply(
        make_target(probing_id, name="prober", command=command, env=env), progress=progress
    )
    assert status.state is RuntimeState.ready  # the health check passes through the private socket

    for seen in (probe_result(runtime, probing_id), probe_in_shell(runtime, probing_id, plan)):
        assert len(seen) == 15, seen
        allowed = {"outside", "resolv.conf"}
        leaks = {name: got for name, got in seen.items() if name not in allowed and "failed" not in got}
        assert leaks == {}, f"reached from inside the environment: {leaks}"
        # slirp4netns's host aliases never leave the namespace, whatever port, whatever the host's resolver.
        aliased = {name: got for name, got in seen.items() if "@10.0.2." in name}
        assert all("No route to host" in got for got in aliased.values()), aliased
        assert seen["outside"] == f"ok: {outside.token}", seen["outside"]
        # DNS goes to the host's own upstream resolvers, never to an address on its loopback.
        assert "127." not in seen["resolv.conf"]
        assert seen["resolv.conf"].startswith("read: b'nameserver "), seen["resolv.conf"]

    start = next(detail for event, key, detail in progress.events if (event, key) == ("finish", "start"))
    assert "own network (outbound only, through slirp4netns)" in start
    assert status.details == {}  # nothing to warn about


def test_the_app_has_no_host_port_and_the_gateway_still_serves_it(
    session: Session, project: Project, runtime: LocalRuntime, host: Host
) -> None:
    [env_id] = _rows(session, project, "web")
    endpoint = _serve_app(runtime, env_id, "web")
    assert endpoint.unix_socket is not None

    # Nothing of the environment's listens on the host: not its $PORT, nor any other inet port.
    assert not host_can_connect("127.0.0.1", endpoint.port)
    assert host_listeners(tree_pids(runtime, env_id)) == []
    socket_dir = Path(endpoint.unix_socket).parent
    assert oct(socket_dir.stat().st_mode & 0o777) == "0o700"

    # envhub reaches it: through the private socket, and the gateway by its public URL.
    assert endpoint_get(endpoint).text == "hello from inside"
    gateway_host = f"web.shop.acme.localhost:{host.envhub_port}"
    response = httpx.get(
        f"http://127.0.0.1:{host.envhub_port}/", headers={"host": gateway_host}, timeout=30, trust_env=False
    )
    assert (response.status_code, response.text) == (200, "hello from inside")
    sock = socket.create_connection(("127.0.0.1", host.envhub_port), timeout=30)
    with ws_connect(f"ws://{gateway_host}/ws", sock=sock, open_timeout=30) as ws:
        ws.send("ping")
        assert ws.recv(timeout=30) == "echo: ping"


def test_a_socket_path_the_environment_could_have_planted_is_never_used(
    session: Session, project: Project, runtime: LocalRuntime
) -> None:
    [env_id] = _rows(session, project, "web")
    _serve_app(runtime, env_id, "web")
    run_dir = runtime.workspace_path(env_id).parent / "run"
    real = run_dir / "app.sock"
    # A symlink where the socket should be (pointing at some host socket) is refused...
    real.unlink()
    real.symlink_to("/var/run/some-host.sock")
    assert runtime.endpoint(env_id) is None
    # ...and so is a folder others could write into.
    real.unlink()
    socket.socket(socket.AF_UNIX).bind(str(real))
    os.chmod(run_dir, 0o777)
    assert runtime.endpoint(env_id) is None
    os.chmod(run_dir, 0o700)
    assert runtime.endpoint(env_id) is not None


def test_without_slirp4netns_the_environment_has_no_network_and_says_so(
    session: Session,
    project: Project,
    settings: Settings,
    outside: Outside,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bin_dir = tmp_path / "bin"  # a PATH with bubblewrap but no slirp4netns
    bin_dir.mkdir()
    for tool in ("bwrap",):
        found = next(Path(d) / tool for d in os.environ["PATH"].split(":") if (Path(d) / tool).exists())
        (bin_dir / tool).symlink_to(found)
    monkeypatch.setenv("PATH", str(bin_dir))
    runtime = LocalRuntime(settings.envs_dir, health_timeout=30)
    [env_id] = _rows(session, project, "offline")
    command, env = probe_command({"http": {"outside": outside.url}})
    progress = RecordingProgress()
    try:
        status = runtime.apply(
            make_target(env_id, name="offline", command=command, env=env), progress=progress
        )
        assert status.state is RuntimeState.ready  # loopback inside still works: the health check passes
        assert probe_result(runtime, env_id)["outside"].startswith("failed")
        assert probe_in_shell(runtime, env_id, {"http": {"outside": outside.url}})["outside"].startswith(
            "failed"
        )

        start = next(detail for event, key, detail in progress.events if (event, key) == ("finish", "start"))
        assert "no network (slirp4netns is not installed)" in start
        assert status.details["condition"] == "no_network"
        assert runtime.status(env_id).details["condition"] == "no_network"

        # The environment page shows it, as the runtime's status watch records it.
        reported: list[RuntimeStatus] = []
        stop = threading.Event()

        def handler(_environment_id: int, status: RuntimeStatus) -> None:
            reported.append(status)
            stop.set()

        watcher = threading.Thread(target=runtime.watch, args=(handler, stop), daemon=True)
        watcher.start()
        watcher.join(30)
        assert reported, "the status watch reported nothing"
        assert reported[0].details["condition"] == "no_network"
        record_status(session=session, environment_id=env_id, status=reported[0])
        row = session.get(Environment, env_id)
        assert row is not None
        detail = environment_detail(row)
        assert detail["condition"] == "no_network"
        assert detail["condition_title"].startswith("No network")
        assert "slirp4netns is not installed" in detail["condition_message"]
    finally:
        kill_environments(runtime)


def test_environments_are_given_only_resolvers_off_the_host_loopback(tmp_path: Path) -> None:
    stub = tmp_path / "resolv.conf"
    stub.write_text("# systemd-resolved's stub\nnameserver 127.0.0.53\noptions edns0\n")
    upstream = tmp_path / "upstream.conf"
    upstream.write_text("nameserver 192.0.2.53\nnameserver ::1\nnameserver 198.51.100.7\n")
    assert nameservers((str(stub), str(upstream))) == ["192.0.2.53", "198.51.100.7"]
    assert nameservers((str(stub),)) == []
