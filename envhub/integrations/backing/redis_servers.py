"""Embedded Redis for environments: one ``redis-server`` per instance, on this machine.

The embedded default (``make run``) has no Redis to share among tenants, and
Redis's own isolation (ACL key patterns) leaves every tenant one ``FLUSHALL``
or ``KEYS *`` away from the others. So each instance is a server of its own,
in ``<folder>/<name>/`` (0700): its config (0600, rewritten at every
``ensure``), its data, its log, its pidfile and its socket.

* It listens on a UNIX socket only (``port 0``, socket 0700 in a 0700
  folder): the local runtime's supervisor relays an environment's
  127.0.0.1:6379 to it, and nobody else on the machine can connect.
* Two users. ``default`` is the tenant's, with the password envhub gives to
  :meth:`EmbeddedRedis.ensure`; ``envhub`` is envhub's, with 256 random bits
  kept in ``admin.key`` (0600) beside the config. The server is given only
  SHA-256 digests, in the config file, never a password on its command line.
* The tenant owns the whole server, so it keeps everything that touches only
  its data (FLUSHALL, KEYS, INFO, CLIENT, Lua, SAVE/BGSAVE/BGREWRITEAOF, which
  write where envhub said). It loses what reaches beyond the data or beyond
  the sandbox: CONFIG (``CONFIG SET dir`` then ``SAVE`` writes a file anywhere
  on the host), DEBUG, MODULE (loads code), ACL (would lift these limits),
  replication and MIGRATE (the *host* would connect wherever the tenant says,
  past the sandbox's network), RESTORE (crafted payloads), MONITOR (would show
  envhub's management commands), SHUTDOWN, FAILOVER, CLUSTER.
* A password is changed on the running server (``ACL SETUSER`` as
  ``envhub``), connections still using the old one are cut, and the config
  file already carries the new digest, so a restart keeps it; data stays.
* Servers daemonize (their own session, parent = init), so a worker that
  restarts or is killed does not take its environments' Redis with it; an
  ``fcntl.flock`` per instance keeps two workers from starting two servers.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import time
from pathlib import Path

import psutil
from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, BusyLoadingError, RedisError
from redis.retry import Retry

from envhub.domain.backing import REDIS_EVICTION, REDIS_MAX_MEMORY, redis_password_digest, redis_tenant_rules
from envhub.errors import BackingServiceError, BackingServiceUnavailable, NotReady
from envhub.integrations.backing.base import Access, BackingKind, parse_instance_name
from envhub.integrations.backing.local_instances import (
    ended,
    instance_lock,
    log_tail,
    pidfile_process,
    start_server,
)
from envhub.private_files import private_dir, write_private

REDIS_PORT = 6379  # what a workload sees, through the local runtime's relay
ADMIN_USER = "envhub"
# A socket address holds 108 bytes, the last one a NUL.
_SOCKET_PATH_MAX = 107
_DIGEST = re.compile(r"#[0-9a-f]{64}")
_GONE_AFTER = 1.0  # seconds without a server process after a launch: it exited


class EmbeddedRedis:
    """:class:`~envhub.integrations.backing.base.CacheServers` as ``redis-server`` processes in ``folder``."""

    def __init__(
        self, folder: Path, *, binary: str, start_timeout: float = 5.0, max_memory: str = REDIS_MAX_MEMORY
    ) -> None:
        self.folder = Path(os.path.abspath(folder))
        self.binary = binary
        self.start_timeout = start_timeout
        # A runaway environment fills its own Redis, not the machine: writes past it are refused.
        self.max_memory = max_memory

    def home(self, name: str) -> Path:
        """The instance's folder (its data, config, log and socket)."""
        if parse_instance_name(name) is None:
            raise ValueError(f"{name!r} is not an instance name envhub made")
        return self.folder / name

    def socket(self, name: str) -> Path:
        return self.home(name) / "redis.sock"

    def ensure(self, name: str, *, password: str, persistent: bool = True) -> Access:
        home = self.home(name)
        if not password:
            raise ValueError("a Redis instance needs a password")
        if len(os.fsencode(home / "redis.sock")) > _SOCKET_PATH_MAX:
            raise BackingServiceError(
                f"the socket of Redis instance {name} would be longer than a socket address allows "
                f"({_SOCKET_PATH_MAX} bytes): {home / 'redis.sock'}",
                hint="Point envhub's data folder at a shorter path.",
            )
        with self._locked(name):
            private_dir(home)
            admin = _admin_password(home / "admin.key")
            _write_config(
                home, password=password, admin=admin, persistent=persistent, max_memory=self.max_memory
            )
            self._run(home, admin)
            self._apply(home, admin, password=password, persistent=persistent, max_memory=self.max_memory)
        return Access(
            kind=BackingKind.redis,
            host="127.0.0.1",
            port=REDIS_PORT,
            username="default",
            password=password,
            unix_socket=str(home / "redis.sock"),
        )

    def remove(self, name: str) -> None:
        home = self.home(name)
        with self._locked(name) as lock:
            if home.is_dir():
                self._stop(home, nosave=True)
                shutil.rmtree(home, ignore_errors=True)
                if home.exists():
                    raise BackingServiceError(
                        f"the data of Redis instance {name} could not be deleted ({home})"
                    )
            lock.unlink(missing_ok=True)

    def names(self) -> set[str]:
        try:
            entries = list(self.folder.iterdir())
        except FileNotFoundError:
            return set()
        return {entry.name for entry in entries if entry.is_dir() and parse_instance_name(entry.name)}

    def stop_all(self) -> None:
        """Stop every instance's server, keeping its data (envhub's shutdown); ``ensure`` starts it again."""
        for name in sorted(self.names()):
            with self._locked(name):
                self._stop(self.home(name), nosave=False)

    # -- the server process

    def _run(self, home: Path, admin: str) -> None:
        """Make sure the instance's server answers, starting it if needed."""
        try:
            if _answers(home, admin):
                return
        except AuthenticationError:
            # Our admin key no longer opens it (the key file was lost): the config file
            # already holds the new key, so a restart repairs it, on the same data.
            self._stop(home, nosave=False)
            try:
                if _answers(home, admin):
                    return
            except AuthenticationError as exc:  # still there: not the pidfile's process
                raise BackingServiceError(
                    f"a redis-server that envhub cannot manage holds the socket of {home.name}, "
                    "and its pidfile does not name it",
                    hint=f"Stop the redis-server whose working folder is {home}, then retry.",
                ) from exc
        if _server_process(home) is None:
            (home / "redis.pid").unlink(missing_ok=True)  # stale: its pid is gone or someone else's
            self._launch(home)
        self._wait(home, admin)

    def _launch(self, home: Path) -> None:
        # daemonize yes: the server forks, calls setsid and is nobody's child, so it outlives the caller.
        start_server(
            [self.binary, str(home / "redis.conf")],
            home,
            log="redis.log",
            timeout=self.start_timeout,
            what="redis-server",
        )

    def _wait(self, home: Path, admin: str) -> None:
        deadline = time.monotonic() + self.start_timeout
        gone_since: float | None = None
        while True:
            if _answers(home, admin):
                return
            now = time.monotonic()
            if _server_process(home) is not None:
                gone_since = None
            elif gone_since is None:
                gone_since = now
            elif now - gone_since > _GONE_AFTER:
                raise BackingServiceUnavailable(f"redis-server for {home.name} exited: {_log_tail(home)}")
            if now > deadline:
                raise NotReady(f"the Redis instance {home.name} is still starting (loading its data?)")
            time.sleep(0.05)

    def _stop(self, home: Path, *, nosave: bool) -> None:
        """SHUTDOWN as envhub's user; signals to the pidfile's process (if it is this server) after."""
        process = _server_process(home)
        try:
            admin = (home / "admin.key").read_text().strip()
        except FileNotFoundError:
            admin = ""
        asked = False
        if admin:
            with contextlib.suppress(RedisError, OSError), _client(home, ADMIN_USER, admin) as client:
                client.ping()  # shutdown() is as quiet when nobody listens as when the server hangs up
                asked = True
                client.shutdown(nosave=nosave)
        if process is None or ended(process, timeout=5 if asked else 0):
            return
        for signal_it in (process.terminate, process.kill):
            with contextlib.suppress(psutil.NoSuchProcess):
                signal_it()
            if ended(process, timeout=5):
                return
        raise BackingServiceUnavailable(f"redis-server for {home.name} (pid {process.pid}) does not stop")

    # -- the server's users

    def _apply(self, home: Path, admin: str, *, password: str, persistent: bool, max_memory: str) -> None:
        """The tenant's password and limits, the persistence and the memory cap, on the running server."""
        digest = redis_password_digest(password)
        try:
            with _client(home, ADMIN_USER, admin) as client:
                current = client.acl_getuser("default") or {}
                changed = list(current.get("passwords", [])) != [digest]
                # Every time (an older envhub may have denied fewer commands); one
                # command, so the user is never left open or half-limited.
                client.execute_command(
                    "ACL", "SETUSER", "default", "reset", f"#{digest}", *redis_tenant_rules()
                )
                if changed:
                    # Whoever authenticated with the old password is cut off now.
                    client.client_kill_filter(user="default")
                wanted = "yes" if persistent else "no"
                if client.config_get("appendonly").get("appendonly") != wanted:
                    client.config_set("appendonly", wanted)
                # A server started by an older envhub had no limit: it gets one now.
                client.config_set("maxmemory", max_memory)
                client.config_set("maxmemory-policy", REDIS_EVICTION)
        except BusyLoadingError as exc:
            raise NotReady(f"the Redis instance {home.name} is loading its data") from exc
        except RedisError as exc:
            # Not the server's words: an ACL error may quote its arguments.
            raise BackingServiceError(
                f"the Redis instance {home.name} refused its users' settings ({type(exc).__name__})"
            ) from exc

    def _locked(self, name: str) -> contextlib.AbstractContextManager[Path]:
        return instance_lock(self.folder, name)


def _answers(home: Path, admin: str) -> bool:
    """Whether the server answers envhub's PING; AuthenticationError when it refuses envhub's key."""
    try:
        with _client(home, ADMIN_USER, admin) as client:
            return bool(client.ping())
    except AuthenticationError:
        raise
    except (RedisError, OSError):  # no socket yet, refused, loading its data
        return False


def _client(home: Path, username: str, password: str) -> Redis:
    return Redis(
        unix_socket_path=str(home / "redis.sock"),
        username=username,
        password=password,
        socket_connect_timeout=2,
        socket_timeout=5,
        retry=Retry(NoBackoff(), 0),  # the callers poll, or report at once
        decode_responses=True,
    )


def _server_process(home: Path) -> psutil.Process | None:
    """The process in the pidfile if it is this instance's redis-server (never another program)."""
    return pidfile_process(
        home, "redis.pid", is_server=lambda process: process.name().startswith("redis-server")
    )


def _write_config(home: Path, *, password: str, admin: str, persistent: bool, max_memory: str) -> None:
    lines = [
        "# Written by envhub at every ensure; edits are lost.",
        "daemonize yes",
        f"dir {_quoted(str(home))}",
        f"pidfile {_quoted(str(home / 'redis.pid'))}",
        f"logfile {_quoted(str(home / 'redis.log'))}",
        "port 0",
        f"unixsocket {_quoted(str(home / 'redis.sock'))}",
        "unixsocketperm 700",
        'save ""',
        f"appendonly {'yes' if persistent else 'no'}",
        "appendfsync everysec",
        f"maxmemory {max_memory}",
        f"maxmemory-policy {REDIS_EVICTION}",
        f"user default reset #{redis_password_digest(password)} {' '.join(redis_tenant_rules())}",
        f"user {ADMIN_USER} on #{redis_password_digest(admin)} ~* &* +@all",
    ]
    scratch = home / ".redis.conf.tmp"
    write_private(scratch, "\n".join(lines) + "\n")
    scratch.replace(home / "redis.conf")


def _admin_password(path: Path) -> str:
    with contextlib.suppress(FileNotFoundError):
        existing = path.read_text().strip()
        if re.fullmatch(r"[0-9a-f]{64}", existing):
            return existing
    password = secrets.token_hex(32)
    scratch = path.with_name(f".{path.name}.tmp")
    write_private(scratch, password + "\n")
    scratch.replace(path)
    return password


def _log_tail(home: Path) -> str:
    # A config error quotes its line, and the user lines hold digests: no business of a reader.
    return log_tail(home / "redis.log", scrub=lambda text: _DIGEST.sub("#<digest>", text))


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
