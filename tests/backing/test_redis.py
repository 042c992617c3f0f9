"""The embedded Redis backend (integrations/backing/redis_servers.py) with real redis-server processes.

Each test gets its own folder under /tmp (a socket path must fit in 107
bytes) and removes every instance it made, so no server outlives it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, ConnectionError, NoPermissionError, ResponseError
from redis.retry import Retry

from envhub.errors import BackingServiceError, BackingServiceUnavailable, NotReady
from envhub.integrations.backing.base import Access, instance_name
from envhub.integrations.backing.redis_servers import EmbeddedRedis
from tests.support.components import require
from tests.support.waiting import wait_for

A = instance_name(1, "cache")
B = instance_name(2, "cache")


@pytest.fixture
def folder() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="envhub-redis-", dir="/tmp")) / "services" / "redis"
    yield path
    EmbeddedRedis(path, binary=str(require("redis-server"))).stop_all()
    for name in os.listdir(path) if path.is_dir() else []:
        for stray in servers_in(path / name):  # a second server, had the lock failed
            stray.kill()
    shutil.rmtree(path.parents[1], ignore_errors=True)


@pytest.fixture
def servers(folder: Path) -> EmbeddedRedis:
    return EmbeddedRedis(folder, binary=str(require("redis-server")))


def connect(access: Access, password: str | None = None) -> Redis:
    """A tenant's client, as the relay would carry it; no silent reconnection, so a cut shows."""
    return Redis(
        unix_socket_path=access.unix_socket,
        username=access.username,
        password=access.password if password is None else password,
        socket_timeout=5,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )


def pid_of(servers: EmbeddedRedis, name: str) -> int:
    return int((servers.home(name) / "redis.pid").read_text())


def ended(pid: int) -> bool:
    """Gone, or a zombie its parent (init, for a daemon) has not reaped yet."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def servers_in(home: Path) -> list[psutil.Process]:
    """Every redis-server working in ``home`` (whatever its pidfile says)."""
    found = []
    for process in psutil.process_iter(["name"]):
        try:
            if process.info["name"].startswith("redis-server") and process.cwd() == str(home):
                found.append(process)
        except psutil.Error:
            continue
    return found


def test_ensure_is_idempotent_private_and_reachable_by_socket_only(servers: EmbeddedRedis) -> None:
    first = servers.ensure(A, password="pw-a")
    pid = pid_of(servers, A)
    second = servers.ensure(A, password="pw-a")

    assert first == second
    assert (first.host, first.port, first.username, first.database) == ("127.0.0.1", 6379, "default", "")
    assert first.unix_socket == str(servers.folder / A / "redis.sock")
    assert "pw-a" not in repr(first)
    assert pid_of(servers, A) == pid, "a second ensure starts no second server"
    assert connect(first).ping()
    home = servers.home(A)
    assert stat.S_IMODE(servers.folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE(Path(first.unix_socket).stat().st_mode) == 0o700
    for private in ("redis.conf", "admin.key"):
        assert stat.S_IMODE((home / private).stat().st_mode) == 0o600
    process = psutil.Process(pid)
    assert not [c for c in process.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    assert process.ppid() != os.getpid(), "detached from its caller"
    assert os.getsid(pid) == pid
    assert not any("pw-a" in part for part in process.cmdline())
    assert "pw-a" not in (home / "redis.conf").read_text()
    assert servers.names() == {A}


def test_data_survives_a_killed_server_and_a_new_adapter(servers: EmbeddedRedis, folder: Path) -> None:
    access = servers.ensure(A, password="pw-a")
    connect(access).set("greeting", "hello")
    old_pid = pid_of(servers, A)
    os.kill(old_pid, signal.SIGKILL)
    wait_for(lambda: ended(old_pid))

    again = servers.ensure(A, password="pw-a")

    assert pid_of(servers, A) != old_pid
    assert connect(again).get("greeting") == "hello"
    servers.stop_all()
    assert not servers_in(servers.home(A))
    fresh = EmbeddedRedis(folder, binary=servers.binary)  # as after a restart of envhub
    assert connect(fresh.ensure(A, password="pw-a")).get("greeting") == "hello"


def test_a_non_persistent_instance_forgets_on_restart(servers: EmbeddedRedis) -> None:
    access = servers.ensure(A, password="pw-a", persistent=False)
    connect(access).set("greeting", "hello")
    servers.stop_all()

    assert connect(servers.ensure(A, password="pw-a", persistent=False)).get("greeting") is None


def test_an_instance_holds_at_most_its_cap_and_refuses_writes_past_it(folder: Path) -> None:
    """Nothing is evicted (a queue must not lose jobs): a write past the cap fails, reads go on."""
    capped = EmbeddedRedis(folder, binary=str(require("redis-server")), max_memory="4mb")
    client = connect(capped.ensure(A, password="pw-a"))
    client.set("first", "kept")
    refused = None
    for index in range(64):  # 8 MB in all, twice the cap
        try:
            client.set(f"block-{index}", "x" * 128 * 1024)
        except ResponseError as exc:
            refused = str(exc)
            break
    assert refused is not None
    assert "maxmemory" in refused
    assert client.get("first") == "kept"
    assert client.get("block-0") is not None  # what fitted stays
    # A running server takes the adapter's cap at the next ensure (one an older envhub started had none).
    uncapped = EmbeddedRedis(folder, binary=str(require("redis-server")), max_memory="0")
    uncapped.ensure(A, password="pw-a")
    connect(uncapped.ensure(A, password="pw-a")).set("block-big", "x" * 128 * 1024)


def test_a_wrong_or_missing_password_is_refused(servers: EmbeddedRedis) -> None:
    access = servers.ensure(A, password="pw-a")
    with pytest.raises(AuthenticationError):
        connect(access, password="pw-b").ping()
    anonymous = Redis(unix_socket_path=access.unix_socket, retry=Retry(NoBackoff(), 0))
    with pytest.raises(AuthenticationError):
        anonymous.get("greeting")


def test_rotation_changes_the_password_of_the_running_server_and_keeps_data(servers: EmbeddedRedis) -> None:
    old = servers.ensure(A, password="pw-old")
    holder = connect(old)
    holder.set("greeting", "hello")
    pid = pid_of(servers, A)

    new = servers.ensure(A, password="pw-new")

    assert pid_of(servers, A) == pid, "rotated in place, not by a restart"
    with pytest.raises(ConnectionError):
        holder.get("greeting")  # a connection made with the old password is cut
    with pytest.raises(AuthenticationError):
        connect(old).ping()
    assert connect(new).get("greeting") == "hello"
    config = (servers.home(A) / "redis.conf").read_text()
    assert "pw-new" not in config
    assert "pw-old" not in config
    # The server's config already holds the new password: a bare restart keeps it.
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: ended(pid))
    subprocess.run([servers.binary, str(servers.home(A) / "redis.conf")], check=True)
    wait_for(lambda: Path(new.unix_socket).exists())
    wait_for(lambda: _answers(new))
    assert connect(new).get("greeting") == "hello"
    with pytest.raises(AuthenticationError):
        connect(old).ping()


def _answers(access: Access) -> bool:
    try:
        return bool(connect(access).ping())
    except ConnectionError:
        return False


def test_two_instances_are_separate(servers: EmbeddedRedis) -> None:
    a = servers.ensure(A, password="pw-a")
    b = servers.ensure(B, password="pw-b")
    connect(a).set("only-in-a", "1")

    assert a.unix_socket != b.unix_socket
    assert connect(b).get("only-in-a") is None
    assert connect(b).keys("*") == []
    with pytest.raises(AuthenticationError):
        connect(b, password="pw-a").ping()
    assert servers.names() == {A, B}


@pytest.mark.parametrize(
    "command",
    [
        ("CONFIG", "SET", "dir", "/tmp"),
        ("CONFIG", "SET", "dbfilename", "authorized_keys"),
        ("CONFIG", "GET", "*"),
        ("CONFIG", "REWRITE"),
        ("DEBUG", "SLEEP", "0"),
        ("MODULE", "LOAD", "/tmp/evil.so"),
        ("ACL", "SETUSER", "default", "+@all"),
        ("ACL", "LIST"),
        ("SHUTDOWN", "NOSAVE"),
        ("REPLICAOF", "127.0.0.1", "6379"),
        ("SLAVEOF", "127.0.0.1", "6379"),
        ("MIGRATE", "127.0.0.1", "6379", "k", "0", "1000"),
        ("RESTORE", "k", "0", "x"),
        ("MONITOR",),
        ("REPLCONF", "listening-port", "1"),
    ],
)
def test_the_tenant_cannot_reach_beyond_its_data(servers: EmbeddedRedis, command: tuple[str, ...]) -> None:
    access = servers.ensure(A, password="pw-a")
    tenant = connect(access)
    admin = admin_of(servers, access)

    if command[0] in ("DEBUG", "MODULE") and int(admin.info("server")["redis_version"].split(".")[0]) >= 7:
        # Redis 7 refuses them to every connection by default (enable-*-command) before the
        # ACL is asked: ask the ACL itself.
        with pytest.raises(ResponseError):
            tenant.execute_command(*command)
        assert "no permissions" in admin.execute_command("ACL", "DRYRUN", "default", *command)
    else:
        with pytest.raises(NoPermissionError):
            tenant.execute_command(*command)

    assert tenant.ping(), "the server is still up"
    assert admin.config_get("dir") == {"dir": str(servers.home(A))}


def admin_of(servers: EmbeddedRedis, access: Access) -> Redis:
    """envhub's own user on the instance, to look at what the tenant cannot."""
    key = (servers.home(A) / "admin.key").read_text().strip()
    return Redis(unix_socket_path=access.unix_socket, username="envhub", password=key, decode_responses=True)


def test_the_tenant_keeps_the_commands_that_touch_only_its_data(servers: EmbeddedRedis) -> None:
    tenant = connect(servers.ensure(A, password="pw-a"))
    tenant.set("k", "v")

    assert tenant.keys("*") == ["k"]
    assert "redis_version" in tenant.info()
    assert tenant.eval("return redis.call('GET', KEYS[1])", 1, "k") == "v"
    assert tenant.flushall()
    assert tenant.dbsize() == 0
    with pytest.raises(ResponseError):
        tenant.execute_command("NOSUCHCOMMAND")


def test_remove_stops_the_server_deletes_its_data_and_is_quiet_when_gone(servers: EmbeddedRedis) -> None:
    servers.ensure(A, password="pw-a")
    servers.ensure(B, password="pw-b")
    pid = pid_of(servers, A)
    home = servers.home(A)

    servers.remove(A)

    assert ended(pid)
    assert not home.exists()
    assert not (servers.folder / ".locks" / f"{A}.lock").exists()
    assert servers.names() == {B}
    servers.remove(A)
    servers.remove(instance_name(3, "never"))
    assert servers.names() == {B}


def test_concurrent_ensures_start_one_server(servers: EmbeddedRedis) -> None:
    start = threading.Barrier(6)
    results: list[Access] = []

    def ensure() -> None:
        start.wait()
        results.append(servers.ensure(A, password="pw-a"))

    threads = [threading.Thread(target=ensure) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert len(results) == 6
    assert [process.pid for process in servers_in(servers.home(A))] == [pid_of(servers, A)]


def test_a_stale_pidfile_is_never_a_reason_to_kill(servers: EmbeddedRedis) -> None:
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        access = servers.ensure(A, password="pw-a")
        connect(access).set("greeting", "hello")
        servers.stop_all()
        pidfile = servers.home(A) / "redis.pid"
        pidfile.write_text(f"{bystander.pid}\n")  # the pid of a server long gone, now another program's

        again = servers.ensure(A, password="pw-a")

        assert connect(again).get("greeting") == "hello"
        assert pid_of(servers, A) != bystander.pid
        assert bystander.poll() is None
        servers.stop_all()
        pidfile.write_text(f"{bystander.pid}\n")
        servers.remove(A)
        assert bystander.poll() is None
        assert not servers.home(A).exists()
    finally:
        bystander.kill()
        bystander.wait()


def test_a_lost_admin_key_is_repaired_by_a_restart_on_the_same_data(servers: EmbeddedRedis) -> None:
    access = servers.ensure(A, password="pw-a")
    connect(access).set("greeting", "hello")
    pid = pid_of(servers, A)
    (servers.home(A) / "admin.key").unlink()

    again = servers.ensure(A, password="pw-a")

    assert pid_of(servers, A) != pid
    assert connect(again).get("greeting") == "hello"
    assert admin_of(servers, again).ping()


def test_names_and_paths_are_checked(servers: EmbeddedRedis) -> None:
    with pytest.raises(ValueError, match="not an instance name"):
        servers.ensure("../../etc", password="pw-a")
    with pytest.raises(ValueError, match="not an instance name"):
        servers.remove("envhub_e1_cache/..")
    deep = EmbeddedRedis(servers.folder / ("d" * 80), binary=servers.binary)
    with pytest.raises(BackingServiceError, match="longer than a socket address"):
        deep.ensure(A, password="pw-a")
    assert servers.names() == set()


def test_a_server_that_cannot_start_is_unavailable(folder: Path) -> None:
    failing = EmbeddedRedis(folder, binary="/bin/false")
    with pytest.raises(BackingServiceUnavailable) as refused:
        failing.ensure(A, password="pw-a")
    assert "pw-a" not in str(refused.value)

    vanishing = EmbeddedRedis(folder, binary="/bin/true")  # "daemonizes", then nothing runs
    with pytest.raises(BackingServiceUnavailable, match="exited"):
        vanishing.ensure(A, password="pw-a")


def test_a_server_still_starting_is_not_ready(folder: Path, tmp_path: Path) -> None:
    # A stand-in that daemonizes and writes its pidfile like redis-server, but never listens.
    fake = tmp_path / "redis-server"
    fake.write_text(
        "#!/bin/sh\n"
        'if [ -z "$STARTED" ]; then STARTED=1 setsid "$0" "$@" </dev/null >/dev/null 2>&1 & exit 0; fi\n'
        "echo $$ > redis.pid\n"
        "sleep 30 & wait\n"
    )
    fake.chmod(0o700)
    slow = EmbeddedRedis(folder, binary=str(fake), start_timeout=1.0)
    starting = 0
    try:
        with pytest.raises(NotReady):
            slow.ensure(A, password="pw-a")
        starting = pid_of(slow, A)
        with pytest.raises(NotReady):
            slow.ensure(A, password="pw-a")
        assert pid_of(slow, A) == starting, "a server still starting is waited for, not started again"
    finally:
        slow.remove(A)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(starting, signal.SIGKILL)  # its `sleep`
    assert not slow.home(A).exists()
