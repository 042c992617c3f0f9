"""Managed services reach a local environment: 127.0.0.1:<port> inside, relayed to a host UNIX socket.

Real bubblewrap, real supervisor, with and without slirp4netns. The service
is this test's own (an echo server on a UNIX socket in a private folder, and
a real redis-server listening on a UNIX socket only); the environment's app
and a shell opened beside it connect to 127.0.0.1:<port> as a database client
would.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

from envhub.domain.specs import EnvironmentTarget, ServiceSocket
from envhub.runtime.base import RuntimeState
from envhub.runtime.local import LocalRuntime
from tests.support.components import require, require_path
from tests.support.inside import host_listeners, tree_pids
from tests.support.runtime import RecordingProgress, kill_environments, make_target
from tests.support.service_sockets import (
    client_command,
    client_in_shell,
    client_result,
    private_folder,
    run_in_shell,
    unix_echo,
)
from tests.support.waiting import wait_ended, wait_for

pytestmark = pytest.mark.slow

ECHO_PORT = 7010
REFUSED = f"failed: ConnectionRefusedError: [Errno {errno.ECONNREFUSED}] {os.strerror(errno.ECONNREFUSED)}"


@pytest.fixture(params=["slirp4netns", "no-network"])
def runtime(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LocalRuntime]:
    require("bwrap")
    if request.param == "slirp4netns":
        require("slirp4netns")
    else:  # a PATH with bubblewrap but no slirp4netns: the environment has loopback only
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        (bin_dir / "bwrap").symlink_to(require_path("bwrap"))
        monkeypatch.setenv("PATH", str(bin_dir))
    rt = LocalRuntime(tmp_path / "envs", sandbox="auto", health_timeout=30)
    yield rt
    kill_environments(rt)


@pytest.fixture
def folder() -> Iterator[Path]:
    path = private_folder()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def with_services(target: EnvironmentTarget, *services: ServiceSocket) -> EnvironmentTarget:
    return dataclasses.replace(target, service_sockets=services)


def test_the_app_and_a_shell_reach_a_host_socket_through_127_0_0_1(
    runtime: LocalRuntime, folder: Path
) -> None:
    plan = {"echo": {"small": ECHO_PORT}, "big": ECHO_PORT, "concurrent": ECHO_PORT}
    command, env = client_command(plan)
    with unix_echo(folder / "echo.sock") as echo:
        target = with_services(
            make_target(1, command=command, env=env), ServiceSocket("db", ECHO_PORT, str(echo.path))
        )
        progress = RecordingProgress()
        status = runtime.apply(target, progress=progress)
        assert status.state is RuntimeState.ready

        expected = {"small": "echo: ping", "big": "same", "concurrent": ["True"] * 8}
        assert client_result(runtime, 1) == expected
        assert client_in_shell(runtime, 1, plan) == expected
        assert echo.connections == 2 * (1 + 1 + 8)
    start = next(detail for event, key, detail in progress.events if (event, key) == ("finish", "start"))
    assert f"services: db on 127.0.0.1:{ECHO_PORT}" in start


def test_a_real_redis_server_answers_through_the_relay(runtime: LocalRuntime, folder: Path) -> None:
    binary = str(require("redis-server"))
    sock = folder / "redis.sock"
    # No TCP port at all: the UNIX socket is the only way in, as for envhub's own services.
    argv = [binary, "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "600"]
    argv += ["--save", "", "--appendonly", "no", "--dir", str(folder)]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_for(sock.exists, timeout=20, what="redis-server's socket")
        # A raw RESP client (the sandbox has python3, not redis-py): PING, SET of 1 MiB, GET it back.
        resp = r"""
import socket, sys
def command(sock, *args):
    sock.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
def line(stream):
    return stream.readline().rstrip(b"\r\n")
value = b"v" * (1 << 20)
with socket.create_connection(("127.0.0.1", 6379), timeout=20) as sock:
    stream = sock.makefile("rb")
    command(sock, b"PING"); print(line(stream).decode())
    command(sock, b"SET", b"from-inside", value); print(line(stream).decode())
    command(sock, b"GET", b"from-inside"); size = int(line(stream)[1:])
    print("same" if stream.read(size) == value else "different")
"""
        command = 'python3 -c "$RESP" > redis.txt 2>&1; exec python3 -m http.server $PORT'
        target = with_services(
            make_target(1, command=command, env={"RESP": resp}), ServiceSocket("cache", 6379, str(sock))
        )
        runtime.apply(target, progress=RecordingProgress())
        assert (runtime.workspace_path(1) / "redis.txt").read_text().split() == ["+PONG", "+OK", "same"]
        assert run_in_shell(runtime, 1, ["python3", "-c", resp]).split() == ["+PONG", "+OK", "same"]
        # It was that server: the key the environment wrote is there, seen from the host.
        with Redis(unix_socket_path=str(sock)) as client:
            assert client.strlen("from-inside") == 1 << 20
    finally:
        server.terminate()
        wait_ended(server)


def test_a_service_that_is_down_resets_at_once_and_is_logged_once(
    runtime: LocalRuntime, folder: Path
) -> None:
    path = folder / "later.sock"
    target = with_services(make_target(1), ServiceSocket("db", ECHO_PORT, str(path)))
    runtime.apply(target, progress=RecordingProgress())

    plan = {"echo": {f"try{i}": ECHO_PORT for i in range(3)}}
    started = time.monotonic()
    seen = client_in_shell(runtime, 1, plan)
    assert time.monotonic() - started < 10
    assert all(got == "closed" or "Connection reset" in got for got in seen.values()), seen
    log = runtime.workspace_path(1).parent / "output.log"
    down = [line for line in log.read_text().splitlines() if "service db:" in line]
    assert down == [
        "envhub: service db: connections are closed: its socket is missing (the service is not running)"
    ]

    # The service comes up: the next connection gets through, without a restart.
    with unix_echo(path):
        assert client_in_shell(runtime, 1, {"echo": {"now": ECHO_PORT}}) == {"now": "echo: ping"}
    assert [line for line in log.read_text().splitlines() if "service db:" in line][-1] == (
        "envhub: service db: answering again"
    )


def test_changing_the_services_on_redeploy_takes_effect(runtime: LocalRuntime, folder: Path) -> None:
    plan = {"echo": {"old": ECHO_PORT, "new": ECHO_PORT + 1}}
    command, env = client_command(plan)
    base = make_target(1, command=command, env=env)
    with unix_echo(folder / "a.sock") as first, unix_echo(folder / "b.sock") as second:
        runtime.apply(
            with_services(base, ServiceSocket("db", ECHO_PORT, str(first.path))), progress=RecordingProgress()
        )
        assert client_result(runtime, 1) == {"old": "echo: ping", "new": REFUSED}

        # Same generation, other services (the project's services changed, not its spec): a restart.
        progress = RecordingProgress()
        changed = with_services(base, ServiceSocket("cache", ECHO_PORT + 1, str(second.path)))
        runtime.apply(changed, progress=progress)
        assert progress.outcome("start") == "finish"
        assert client_result(runtime, 1) == {"old": REFUSED, "new": "echo: ping"}
        assert (first.connections, second.connections) == (1, 1)

        progress = RecordingProgress()
        runtime.apply(changed, progress=progress)  # nothing changed: no restart
        assert progress.outcome("start") == "skip"

        runtime.apply(base, progress=(progress := RecordingProgress()))
        assert progress.outcome("start") == "finish"
        assert client_result(runtime, 1) == {"old": REFUSED, "new": REFUSED}


def test_a_sandbox_on_the_hosts_network_relays_nothing_and_says_so(tmp_path: Path, folder: Path) -> None:
    # The operator's sandbox for trusted code: 127.0.0.1 there is the host's, where a relay would
    # open the service to every local user (and clash with the machine's own PostgreSQL or Redis).
    require("unshare")
    runtime = LocalRuntime(tmp_path / "envs", sandbox="unshare", health_timeout=30)
    try:
        with unix_echo(folder / "echo.sock") as echo:
            target = with_services(make_target(1), ServiceSocket("db", ECHO_PORT, str(echo.path)))
            progress = RecordingProgress()
            runtime.apply(target, progress=progress)
            start = next(
                detail for event, key, detail in progress.events if (event, key) == ("finish", "start")
            )
            assert start.endswith("; services not relayed (the host's network is shared)")
            listening = host_listeners(tree_pids(runtime, 1))  # the app's own $PORT, and nothing else
            assert len(listening) == 1, listening
            assert f"port={ECHO_PORT})" not in listening[0], listening
            log = (runtime.workspace_path(1).parent / "output.log").read_text()
            assert "envhub: services not relayed (the host's network is shared): db" in log
            assert echo.connections == 0
    finally:
        kill_environments(runtime)
