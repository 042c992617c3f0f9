"""The managed Redis of a cluster environment (integrations/backing/redis_workloads.py), its configuration
read by a real redis-server.

The test cluster's kubelet runs no images, so what the Redis pod runs is
checked here: the configuration in the Secret envhub renders, given to a real
``redis-server`` (only its data folder and listener moved to the test's: no
``/data`` here, and the cluster's port is not ours), answers to the password in
the ``REDIS_URL`` the workloads receive and to nothing else, denies the tenant
what the embedded servers deny, persists as declared, and keeps its data
through a rotation (a new configuration on the same volume).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, NoPermissionError
from redis.retry import Retry

from envhub.domain.backing import Connection, parse_backing, variables_for
from envhub.domain.kube import namespace_for, render_environment
from envhub.domain.specs import EnvironmentTarget
from envhub.integrations.backing.redis_workloads import RedisWorkloads
from tests.support.components import require
from tests.support.runtime import make_target
from tests.support.waiting import wait_for

ADMIN = "tester"
ADMIN_PASSWORD = "tester-password"


@pytest.fixture
def folder() -> Iterator[Path]:
    # Short: a UNIX socket's path must fit in 107 bytes.
    path = Path(tempfile.mkdtemp(prefix="envhub-rw-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


Start = Callable[[str], Path]


@pytest.fixture
def start(folder: Path) -> Iterator[Start]:
    """Run a redis-server on a rendered configuration, in ``folder`` (its data) and on a socket there."""
    binary = str(require("redis-server"))
    started: list[subprocess.Popen[bytes]] = []

    def run(config: str) -> Path:
        assert config.count("\ndir /data\n") == 1
        (folder / "redis.conf").write_text(config.replace("\ndir /data\n", f"\ndir {folder}\n"))
        socket = folder / "redis.sock"
        process = subprocess.Popen(
            [
                binary,
                str(folder / "redis.conf"),
                # Overrides after the file, as command-line options are: no TCP, a socket, and a user of the
                # test's own to read the settings the tenant may not.
                *("--port", "0", "--unixsocket", str(socket), "--unixsocketperm", "700"),
                *("--user", ADMIN, "on", f">{ADMIN_PASSWORD}", "~*", "&*", "+@all"),
            ],
            stdout=(folder / "redis.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        started.append(process)
        wait_for(lambda: _answers(socket) or process.poll() is not None, timeout=10, what="redis-server")
        assert process.poll() is None, (folder / "redis.log").read_text()
        return socket

    yield run
    for process in started:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait(timeout=10)


def _client(socket: Path, **credentials: str) -> Redis:
    """A client without silent retries (redis-py retries a refused AUTH, a ConnectionError, with backoff)."""
    return Redis(unix_socket_path=str(socket), socket_timeout=5, retry=Retry(NoBackoff(), 0), **credentials)


def _admin(socket: Path) -> Redis:
    return _client(socket, username=ADMIN, password=ADMIN_PASSWORD)


def _answers(socket: Path) -> bool:
    try:
        with _admin(socket) as client:
            return bool(client.ping())
    except Exception:
        return False


def _stop(folder: Path, socket: Path) -> None:
    """SHUTDOWN as the test's user (the pod's termination: the server saves, then exits)."""
    with (
        _admin(socket) as client,
        contextlib.suppress(Exception),
    ):
        client.shutdown()
    wait_for(lambda: not socket.exists(), timeout=10, what="redis-server to stop")


def _target() -> EnvironmentTarget:
    return make_target(7, name="pr-7")


def _provisioned(password: str, *, persistent: bool = True) -> tuple[str, str]:
    """(REDIS_URL, the server's configuration) as provisioning and the renderer make them."""
    target = _target()
    declaration = parse_backing([{"name": "cache", "kind": "redis", "persistent": persistent}]).services[0]
    placement = RedisWorkloads().place(
        "cache", namespace=namespace_for(target), password=password, persistent=persistent, size=""
    )
    access = placement.access
    connection = Connection(access.kind.value, access.host, access.port, access.username, access.password)
    url = variables_for(declaration, connection)["REDIS_URL"]
    objects = render_environment(dataclasses.replace(target, service_objects=placement.objects))
    [secret] = [o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"] == "envhub-redis-cache"]
    return url, base64.b64decode(secret["data"]["redis.conf"]).decode()


def _tenant(socket: Path, url: str) -> Redis:
    """The app's client: the password of its REDIS_URL, no user name (AUTH <password>)."""
    parts = urlsplit(url)
    assert parts.username in ("", None)
    return _client(socket, password=unquote(parts.password or ""))


def test_the_url_points_at_the_service_in_the_environments_namespace() -> None:
    url, _ = _provisioned("p@ss/w:rd?#0123456789abcdefghij")
    parts = urlsplit(url)
    assert (parts.scheme, parts.hostname, parts.port, parts.path) == (
        "redis",
        f"envhub-redis-cache.{namespace_for(_target())}.svc",
        6379,
        "/0",
    )
    assert url.startswith("redis://:")
    assert unquote(parts.password or "") == "p@ss/w:rd?#0123456789abcdefghij"


def test_the_server_answers_to_the_workloads_password_only(start: Start) -> None:
    url, config = _provisioned("first-password-0123456789abcdef")
    socket = start(config)
    with _tenant(socket, url) as client:
        assert client.set("greeting", "hello")
        assert client.get("greeting") == b"hello"
    with (
        _client(socket, password="wrong-password") as stranger,
        pytest.raises(AuthenticationError),
    ):
        stranger.ping()
    with (
        _client(socket) as anonymous,
        pytest.raises(AuthenticationError, match="required"),
    ):
        anonymous.get("greeting")


def test_the_tenant_cannot_reconfigure_the_server_or_make_it_connect_out(start: Start) -> None:
    url, config = _provisioned("first-password-0123456789abcdef")
    socket = start(config)
    with _tenant(socket, url) as client:
        for command in (
            ("CONFIG", "SET", "dir", "/tmp"),
            ("CONFIG", "GET", "requirepass"),
            ("ACL", "SETUSER", "default", "nopass"),
            ("REPLICAOF", "10.0.0.1", "6379"),
            ("MIGRATE", "10.0.0.1", "6379", "k", "0", "1000"),
            ("MODULE", "LIST"),
            ("SHUTDOWN",),
            ("MONITOR",),
        ):
            with pytest.raises(NoPermissionError):
                client.execute_command(*command)
        # What touches only its own data stays the tenant's.
        assert client.flushall()


def test_a_persistent_redis_appends_and_keeps_its_data_through_a_rotation(start: Start, folder: Path) -> None:
    url, config = _provisioned("first-password-0123456789abcdef")
    socket = start(config)
    with _admin(socket) as admin:
        settings = {
            key: admin.config_get(key)[key] for key in ("appendonly", "appendfsync", "save", "maxmemory")
        }
        assert settings == {
            "appendonly": "yes",
            "appendfsync": "everysec",
            "save": "3600 1 300 100 60 10000",
            "maxmemory": str(256 * 1024 * 1024),
        }
        assert admin.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
    with _tenant(socket, url) as client:
        client.set("kept", "yes")
    _stop(folder, socket)

    # The rotation: a new configuration (a new digest) on the same data; the old password stops working.
    new_url, new_config = _provisioned("second-password-0123456789abcdef")
    assert new_config != config
    socket = start(new_config)
    with _tenant(socket, new_url) as client:
        assert client.get("kept") == b"yes"
    with _tenant(socket, url) as old, pytest.raises(AuthenticationError):
        old.ping()


def test_an_in_memory_redis_writes_nothing(start: Start, folder: Path) -> None:
    url, config = _provisioned("first-password-0123456789abcdef", persistent=False)
    socket = start(config)
    with _admin(socket) as admin:
        assert admin.config_get("appendonly")["appendonly"] == "no"
        assert admin.config_get("save")["save"] == ""
    with _tenant(socket, url) as client:
        client.set("gone", "soon")
    _stop(folder, socket)
    assert not list(folder.glob("*.rdb"))
    assert not list(folder.glob("appendonly*"))
