"""The PostgreSQL server envhub runs itself in the embedded default, from the installed binaries.

One server for every environment's database on this machine, in a folder
envhub gives it (``<data dir>/services/postgres``): ``initdb`` once, then
``pg_ctl start`` whenever it is not running; its data survives envhub's
restarts. The databases and roles are made by :class:`.postgres.PostgresServer`,
connected over the server's unix socket.

Who may connect, and how:

* The server listens on nothing but a unix socket (``listen_addresses=''``)
  in ``<folder>/socket``, a 0700 folder of the server's account: no other
  local user can reach it.
* Environments reach it only through envhub's own relay (the local runtime's
  supervisor listens on 127.0.0.1:5432 inside the sandbox and connects to the
  socket). So every connection arrives from envhub's side of the socket:
  ``peer`` or ``trust`` authentication could not tell envhub from a sandbox
  speaking through the relay. ``pg_hba.conf`` therefore asks a password
  (``scram-sha-256``) of everyone, envhub's admin included: its password is
  256 random bits, generated once into ``<folder>/admin-password`` (0600).
* CONNECT on the ``postgres`` and ``template1`` databases is revoked from
  PUBLIC, so an instance's role reaches its own database and nothing else.

PostgreSQL refuses to run as root: as root the server runs as the
``postgres`` user (else ``nobody``) through ``setpriv``, and the folder is
handed to that user, who must be able to reach it (every parent folder
searchable); otherwise the first start fails and says so. Two worker
processes may start it at once: starting, stopping and first-time setup hold
an exclusive ``flock`` on ``<folder>/.lock``, and a running server is reused.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from psycopg.conninfo import make_conninfo

from envhub.errors import BackingServiceError, BackingServiceUnavailable
from envhub.integrations.backing.base import Access, Dump, RestoreCheck
from envhub.integrations.backing.postgres import CONNECTION_LIMIT, PostgresServer, find_binary
from envhub.private_files import traversable, write_private

SERVER_PACKAGE = "postgresql"
ADMIN = "postgres"
_SOCKET_PATH_MAX = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux
_T = TypeVar("_T")


class EmbeddedPostgres:
    """A :class:`~envhub.integrations.backing.base.DatabaseServer` on a server envhub starts itself.

    ``port`` names the socket (``.s.PGSQL.<port>``) and is the port workloads
    use through the relay; no TCP port is opened.
    """

    def __init__(
        self,
        folder: Path,
        *,
        port: int = 5432,
        bin_dir: Path | None = None,
        start_timeout: int = 60,
        pass_through: Path | None = None,
        connection_limit: int = CONNECTION_LIMIT,
    ) -> None:
        """``pass_through``: as root, the server's account must pass through the folders from there
        down to ``folder``; they are made 0711 when the server is first needed (never listable)."""
        self.folder = folder
        self._pass_through = pass_through
        self.port = port
        self._bin_dir = bin_dir
        self._start_timeout = start_timeout
        self._server: PostgresServer | None = None
        self.connection_limit = connection_limit

    @property
    def socket_dir(self) -> Path:
        return self.folder / "socket"

    @property
    def socket_path(self) -> Path:
        return self.socket_dir / f".s.PGSQL.{self.port}"

    @property
    def _data(self) -> Path:
        return self.folder / "data"

    # -- the port, on the started server ----------------------------------------------------------

    def ensure(self, name: str, *, password: str) -> Access:
        return self._call(lambda server: server.ensure(name, password=password))

    def remove(self, name: str) -> None:
        self._call(lambda server: server.remove(name))

    def names(self) -> set[str]:
        return self._call(lambda server: server.names())

    def dump(self, name: str, path: Path) -> Dump:
        return self._call(lambda server: server.dump(name, path))

    def restore(self, name: str, path: Path) -> None:
        self._call(lambda server: server.restore(name, path))

    def check(self, name: str, path: Path) -> RestoreCheck:
        return self._call(lambda server: server.check(name, path))

    # -- the server's life ------------------------------------------------------------------------

    def start(self) -> PostgresServer:
        """Set the server up (first time) and start it unless it runs; returns its admin adapter."""
        account = _server_account()
        with self._locked(account):
            if not (self._data / "PG_VERSION").exists() or not (self.folder / "initialized").exists():
                self._initialize(account)
            self._write_config(account)
            if not self._running(account):
                self._run(
                    account,
                    [
                        *("start", "-D", str(self._data), "-w", "-t", str(self._start_timeout)),
                        *("-l", str(self.folder / "server.log")),
                    ],
                    "pg_ctl start",
                )
            server = self._admin_server()
            server.revoke_connect("postgres", "template1")
        self._server = server
        return server

    def stop(self) -> None:
        """Stop the server (fast: sessions are ended); quiet when it is not running."""
        account = _server_account()
        if not self.folder.is_dir():
            return
        with self._locked(account):
            if self._running(account):
                self._run(account, ["stop", "-D", str(self._data), "-m", "fast", "-w"], "pg_ctl stop")
        self._server = None

    def _call(self, operation: Callable[[PostgresServer], _T]) -> _T:
        """Run ``operation`` on the server, starting it first, and again once if it had stopped."""
        server = self._server or self.start()
        try:
            return operation(server)
        except BackingServiceUnavailable:
            if self._running(_server_account()):
                raise
        return operation(self.start())  # stopped behind our back (another process's stop, a crash)

    def _admin_server(self) -> PostgresServer:
        password = (self.folder / "admin-password").read_text().strip()
        admin_url = make_conninfo(
            "", host=str(self.socket_dir), port=self.port, user=ADMIN, dbname="postgres", password=password
        )
        return PostgresServer(
            admin_url,
            host="127.0.0.1",
            port=self.port,
            unix_socket=str(self.socket_path),
            unix_socket_owner=account.pw_uid if (account := _server_account()) else None,
            bin_dir=self._bin_dir or find_binary("pg_ctl", package=SERVER_PACKAGE).parent,
            connection_limit=self.connection_limit,
        )

    def _initialize(self, account: pwd.struct_passwd | None) -> None:
        """A fresh cluster (a half-made one from a killed first start is thrown away)."""
        if self._running(account):
            self._run(account, ["stop", "-D", str(self._data), "-m", "immediate", "-w"], "pg_ctl stop")
        shutil.rmtree(self._data, ignore_errors=True)
        (self.folder / "initialized").unlink(missing_ok=True)
        password_file = self.folder / "admin-password"
        write_private(password_file, secrets.token_hex(32) + "\n")
        _give(password_file, account)
        initdb = find_binary("initdb", package=SERVER_PACKAGE, bin_dir=self._bin_dir)
        argv = [str(initdb), "-D", str(self._data), "-U", ADMIN, f"--pwfile={password_file}"]
        _run(account, [*argv, "-A", "scram-sha-256", "-E", "UTF8", "--locale=C"], "initdb", self.folder)
        hba = self._data / "pg_hba.conf"
        write_private(
            hba,
            "# Written by envhub: a password for everyone, envhub included.\nlocal all all scram-sha-256\n",
        )
        _give(hba, account)
        with (self._data / "postgresql.conf").open("a") as conf:
            conf.write("\ninclude_if_exists = 'envhub.conf'\n")
        write_private(self.folder / "initialized", "")

    def _write_config(self, account: pwd.struct_passwd | None) -> None:
        if len(str(self.socket_path).encode()) > _SOCKET_PATH_MAX:
            raise BackingServiceError(
                f"the embedded PostgreSQL's socket path {self.socket_path} is longer than the "
                f"{_SOCKET_PATH_MAX} bytes a unix socket address holds",
                hint="Give envhub a shorter data folder (ENVHUB_DATA_DIR).",
            )
        self.socket_dir.mkdir(mode=0o700, exist_ok=True)
        _give(self.socket_dir, account)
        config = self._data / "envhub.conf"
        lines = [
            "# Written by envhub at every start; edits are lost.",
            "listen_addresses = ''",
            f"port = {self.port}",
            f"unix_socket_directories = {_quoted(str(self.socket_dir))}",
            "unix_socket_permissions = 0700",
            "password_encryption = 'scram-sha-256'",
            # No replica or archive reads this server's WAL (envhub's backups are dumps), so it logs
            # only what crash recovery needs: a table made and filled in one transaction, as every
            # restore does, is written once instead of twice (bench/services.py).
            "wal_level = minimal",
            "max_wal_senders = 0",
        ]
        write_private(config, "\n".join(lines) + "\n")
        _give(config, account)

    def _running(self, account: pwd.struct_passwd | None) -> bool:
        if not (self._data / "postmaster.pid").exists():
            return False
        pg_ctl = find_binary("pg_ctl", package=SERVER_PACKAGE, bin_dir=self._bin_dir)
        done = subprocess.run(
            _as(account, [str(pg_ctl), "status", "-D", str(self._data)]),
            capture_output=True,
            timeout=30,
            check=False,
            cwd=self.folder,
            env=_server_env(),
        )
        return done.returncode == 0

    def _run(self, account: pwd.struct_passwd | None, args: list[str], what: str) -> None:
        pg_ctl = find_binary("pg_ctl", package=SERVER_PACKAGE, bin_dir=self._bin_dir)
        _run(account, [str(pg_ctl), *args], what, self.folder)

    @contextlib.contextmanager
    def _locked(self, account: pwd.struct_passwd | None) -> Iterator[None]:
        if not self.folder.is_dir():
            self.folder.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            with contextlib.suppress(FileExistsError):
                self.folder.mkdir(mode=0o700)
        _give(self.folder, account)
        if account is not None:
            if self._pass_through is not None:  # our own folders on the way: open them to passing only
                traversable(self.folder.parent, up_to=self._pass_through)
            _reachable(self.folder, account)
        fd = os.open(self.folder / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock


def _server_account() -> pwd.struct_passwd | None:
    """Who runs the server: None for envhub's own user, else (as root) an unprivileged account."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise BackingServiceError(
        "envhub runs as root, which PostgreSQL refuses, and there is no `postgres` or `nobody` user",
        hint=f"Install Debian's `{SERVER_PACKAGE}` package (it adds a `postgres` user).",
    )


def _as(account: pwd.struct_passwd | None, argv: list[str]) -> list[str]:
    if account is None:
        return argv
    ids = [f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--clear-groups"]
    return ["setpriv", *ids, "--", *argv]


def _give(path: Path, account: pwd.struct_passwd | None) -> None:
    if account is not None:
        os.chown(path, account.pw_uid, account.pw_gid)


def _reachable(folder: Path, account: pwd.struct_passwd) -> None:
    done = subprocess.run(
        _as(account, ["test", "-w", str(folder), "-a", "-x", str(folder)]), capture_output=True, check=False
    )
    if done.returncode != 0:
        raise BackingServiceError(
            f"the embedded PostgreSQL runs as the `{account.pw_name}` user, who cannot reach {folder}",
            hint=f"Let `{account.pw_name}` search (x) every parent folder of {folder}, or move it.",
        )


def _server_env() -> dict[str, str]:
    """envhub's environment without PG* variables, which would steer the server and pg_ctl."""
    return {key: value for key, value in os.environ.items() if not key.startswith("PG")}


def _run(account: pwd.struct_passwd | None, argv: list[str], what: str, folder: Path) -> None:
    # cwd: the server's own folder, which its account can enter (envhub's may not be).
    done = subprocess.run(
        _as(account, argv),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=folder,
        env=_server_env(),
    )
    if done.returncode != 0:
        log = folder / "server.log"
        tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
        raise BackingServiceUnavailable(
            f"{what} of the embedded PostgreSQL in {folder} failed ({done.returncode}): "
            f"{(done.stdout + done.stderr)[-1500:]}{tail}"
        )


def _quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"
