"""A private PostgreSQL server per test process, from the machine's binaries.

The suite owns its database server instead of borrowing whatever answers on
127.0.0.1:5432 (or quietly falling back to SQLite when nothing does): ``initdb``
into a fresh temporary folder, ``pg_ctl start`` on a free loopback port and a
unix socket in that folder, trust authentication. Each xdist process starts its own, so two
processes never share tables. ``make test-system-deps`` installs the binaries
(Debian ``postgresql``) when they are missing; without them the tests fail,
naming the package.

PostgreSQL refuses to run as root, so as root the server runs as the
``postgres`` user (else ``nobody``) through ``setpriv``; its folder is handed
to that user. A folder left by a killed test process (its pid in the folder's
name) is stopped and removed by the next one.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg

from tests.support.net import free_port

PREFIX = "envhub-test-pg-"
PACKAGE_HINT = "install Debian's `postgresql` package (`make test-system-deps` does, as root)"


class PostgresMissing(Exception):
    """The PostgreSQL server binaries are not installed."""


def bin_dir() -> Path:
    """The newest installed server binaries (``initdb``, ``pg_ctl``), Debian's layout first, then PATH."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(re.sub(r"\D", "", Path(path).parent.parent.name) or 0),
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl", path=str(Path(initdb).resolve().parent)):
        return Path(initdb).resolve().parent
    raise PostgresMissing(f"PostgreSQL's initdb and pg_ctl were not found: {PACKAGE_HINT}")


def _server_account() -> pwd.struct_passwd | None:
    """Who runs the server: None for the current user, else an unprivileged account (when root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise PostgresMissing("running as root, and neither a `postgres` nor a `nobody` user exists")


def _as(account: pwd.struct_passwd | None, argv: list[str]) -> list[str]:
    if account is None:
        return argv
    return [
        "setpriv",
        f"--reuid={account.pw_uid}",
        f"--regid={account.pw_gid}",
        "--clear-groups",
        "--",
        *argv,
    ]


@dataclass(frozen=True)
class PostgresServer:
    folder: Path
    port: int
    user: str = "postgres"

    @property
    def admin_dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user={self.user} dbname=postgres connect_timeout=5"

    def url(self, database: str) -> str:
        """A SQLAlchemy URL for ``database`` on this server."""
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _run(argv: list[str], what: str, folder: Path) -> None:
    # cwd: the server's own folder, which its account can enter (the checkout may not be).
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False, cwd=folder)
    if done.returncode != 0:
        log = folder / "server.log"
        tail = log.read_text()[-2000:] if log.exists() else ""
        raise RuntimeError(f"{what} failed ({done.returncode}): {done.stdout}{done.stderr}{tail}")


def _stop(bin_path: Path, folder: Path, account: pwd.struct_passwd | None) -> None:
    if (folder / "data" / "postmaster.pid").exists():
        subprocess.run(
            _as(account, [str(bin_path / "pg_ctl"), "stop", "-D", str(folder / "data"), "-m", "immediate"]),
            capture_output=True,
            timeout=60,
            check=False,
            cwd=folder,
        )
    shutil.rmtree(folder, ignore_errors=True)


def _remove_stale(bin_path: Path, account: pwd.struct_passwd | None) -> None:
    for folder in Path(tempfile.gettempdir()).glob(f"{PREFIX}*"):
        match = re.match(rf"{PREFIX}(\d+)-", folder.name)
        if match and not psutil.pid_exists(int(match.group(1))):
            _stop(bin_path, folder, account)


@contextlib.contextmanager
def private_postgres() -> Iterator[PostgresServer]:
    """Start a throwaway PostgreSQL server; stopped and deleted on exit."""
    bin_path = bin_dir()
    account = _server_account()
    _remove_stale(bin_path, account)
    folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))
    folder.chmod(0o700)
    if account is not None:
        os.chown(folder, account.pw_uid, account.pw_gid)
    data = folder / "data"
    port = free_port()
    try:
        _run(
            _as(
                account,
                [str(bin_path / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8"],
            ),
            "initdb",
            folder,
        )
        options = " ".join(
            [
                f"-p {port}",
                f"-k {folder}",
                "-c listen_addresses=127.0.0.1",
                # Durability as a real server has it: some tests (tests/kube/test_crash.py)
                # pause workers between commits and depend on commit timings being real.
                "-c max_connections=300",
            ]
        )
        _run(
            _as(
                account,
                [
                    str(bin_path / "pg_ctl"),
                    "start",
                    "-D",
                    str(data),
                    "-w",
                    "-t",
                    "60",
                    "-l",
                    str(folder / "server.log"),
                    "-o",
                    options,
                ],
            ),
            "pg_ctl start",
            folder,
        )
        yield PostgresServer(folder=folder, port=port)
    finally:
        _stop(bin_path, folder, account)
