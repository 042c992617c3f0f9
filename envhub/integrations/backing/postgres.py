"""PostgreSQL instances on a server envhub administers: a database and a role of the same name each.

The :class:`~envhub.integrations.backing.base.DatabaseServer` adapter for a
server envhub reaches with an admin connection (psycopg 3): the operator's
own server, or the one :mod:`.embedded_postgres` starts. Each instance is
sealed off from the others: CONNECT on its database and every privilege on
its ``public`` schema are revoked from PUBLIC, so another environment's role
can neither connect nor, were it let in, read a table.

* Passwords never travel in clear: ``ensure`` hashes the password into a
  SCRAM-SHA-256 verifier in this process (libpq's ``PQencryptPasswordConn``)
  and sends the verifier, so the server's statement log, were it on, shows no
  password. ``pg_dump``/``pg_restore`` get the admin password through
  ``PGPASSWORD``, never on their command line (which ``ps`` shows); error
  messages quote the server's primary message only.
* Concurrent ``ensure`` calls of one instance (two workers, a retried job)
  take a session advisory lock on the instance's name, and still tolerate a
  "duplicate" answer from CREATE ROLE/DATABASE, then carry on with the
  repairs: every run sets the password, the owner and the revokes again.
* Backups are ``pg_dump -Fc`` at compression level 1 (:data:`DUMP_COMPRESSION`)
  streamed to the file (hashed on the way);
  restores are ``pg_restore --clean --if-exists --no-owner --no-privileges
  --role=<instance>`` in one transaction, so restored objects belong to the
  instance's role and a failed restore leaves the database as it was.
  ``--no-privileges``: a dump's GRANTs name the roles of the instance it came
  from, which need not exist where it is restored.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from envhub.errors import BackingServiceError, BackingServiceUnavailable, NotReady
from envhub.integrations.backing.base import Access, BackingKind, Dump, RestoreCheck, is_envhub_name

CLIENT_PACKAGE = "postgresql-client"
_CHUNK = 1 << 20
# Connections one instance's role may hold at once: the server's are shared by every environment.
CONNECTION_LIMIT = 20
# gzip level of backups. pg_dump's default (6) spends most of a dump's time compressing: on typical
# rows level 1 dumps about a third faster for a file about 5% larger (bench/services.py prints both).
DUMP_COMPRESSION = 1
# Failures of the server rather than refusals: connection exception, insufficient resources,
# operator intervention, system error.
_UNAVAILABLE_STATES = ("08", "53", "57", "58")
_BUSY = re.compile(r"too many|shutting down|in recovery|out of memory")
_UNREACHABLE = re.compile(r"Connection refused|timeout expired|No such file or directory|could not connect")
_DUPLICATE = (pg_errors.DuplicateObject, pg_errors.DuplicateDatabase, pg_errors.UniqueViolation)


def find_binary(name: str, *, package: str = CLIENT_PACKAGE, bin_dir: Path | None = None) -> Path:
    """``bin_dir/name``, else the newest in Debian's ``/usr/lib/postgresql/<version>/bin``, else PATH."""
    if bin_dir is not None:
        candidate = bin_dir / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    else:
        found = sorted(
            glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
            key=lambda path: int(re.sub(r"\D", "", Path(path).parent.parent.name) or 0),
        )
        if found:
            return Path(found[-1])
        on_path = shutil.which(name)
        if on_path:
            return Path(on_path)
    where = f" in {bin_dir}" if bin_dir is not None else ""
    raise BackingServiceError(
        f"PostgreSQL's `{name}` program was not found{where}",
        hint=f"Install Debian's `{package}` package on the machines running envhub's worker.",
    )


def _said(exc: psycopg.Error) -> str:
    """What the server (or libpq) said, without the statement, which may hold a password verifier."""
    primary = exc.diag.message_primary if exc.diag else None
    if primary:
        return primary
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return first.rsplit(" failed: ", 1)[-1].removeprefix("FATAL:").strip()


def _raise(exc: psycopg.Error, what: str) -> NoReturn:
    state = exc.sqlstate or ""
    text = str(exc)
    if state == "57P03" or "the database system is starting up" in text:
        raise NotReady(f"PostgreSQL is not accepting connections yet while {what}: {_said(exc)}") from exc
    if state:
        unavailable = isinstance(exc, psycopg.OperationalError) and state.startswith(_UNAVAILABLE_STATES)
    else:  # the connection failed: no server, or the server's FATAL answer to the login
        unavailable = "FATAL:" not in text or bool(_BUSY.search(text))
    if unavailable:
        raise BackingServiceUnavailable(f"PostgreSQL did not answer while {what}: {_said(exc)}") from exc
    raise BackingServiceError(f"PostgreSQL refused {what}: {_said(exc)}") from exc


@contextlib.contextmanager
def _translated(what: str) -> Iterator[None]:
    try:
        yield
    except psycopg.Error as exc:
        _raise(exc, what)


def _checked(name: str) -> str:
    """Only names envhub made: a typo must never drop the operator's own database."""
    if not is_envhub_name(name):
        raise ValueError(f"{name!r} is not an envhub instance name")
    return name


class PostgresServer:
    """Databases and roles per instance on one PostgreSQL server, through an admin connection.

    ``admin_url`` is a libpq URL or ``key=value`` string for a superuser, or a
    role with CREATEDB and CREATEROLE (it grants itself each instance's role,
    to own and restore its database). ``host``/``port`` (and ``unix_socket``)
    are what workloads are told. ``bin_dir`` holds ``pg_dump``/``pg_restore``
    (default: found as :func:`find_binary` does).
    """

    def __init__(
        self,
        admin_url: str,
        *,
        host: str,
        port: int = 5432,
        unix_socket: str = "",
        unix_socket_owner: int | None = None,
        bin_dir: Path | None = None,
        connect_timeout: int = 10,
        connection_limit: int = CONNECTION_LIMIT,
    ) -> None:
        if connection_limit < 1:
            raise ValueError("an instance's role needs at least one connection")
        self.connection_limit = connection_limit
        try:
            params = conninfo_to_dict(admin_url)
        except psycopg.Error as exc:
            raise BackingServiceError("the PostgreSQL admin URL cannot be parsed") from exc
        params.setdefault("connect_timeout", connect_timeout)
        self._params: dict[str, Any] = params
        self.host = host
        self.port = port
        self.unix_socket = unix_socket
        self.unix_socket_owner = unix_socket_owner
        self._bin_dir = bin_dir

    def __repr__(self) -> str:
        shown = {key: value for key, value in self._params.items() if key != "password"}
        return f"PostgresServer({make_conninfo('', **shown)!r}, host={self.host!r}, port={self.port})"

    # -- the port ---------------------------------------------------------------------------------

    def ensure(self, name: str, *, password: str) -> Access:
        role = sql.Identifier(_checked(name))
        with _translated(f"making the database and role {name}"):
            with self._connect() as conn, _locked(conn, name):
                superuser = _is_superuser(conn)
                verifier = conn.pgconn.encrypt_password(password.encode(), name.encode(), b"scram-sha-256")
                # Only a superuser may even mention SUPERUSER, REPLICATION and BYPASSRLS.
                attributes = sql.SQL("NOSUPERUSER NOREPLICATION NOBYPASSRLS" if superuser else "")
                options = sql.SQL("LOGIN NOCREATEDB NOCREATEROLE {} CONNECTION LIMIT {} PASSWORD {}").format(
                    attributes, sql.Literal(self.connection_limit), sql.Literal(verifier.decode())
                )
                if not _exists(conn, "SELECT 1 FROM pg_roles WHERE rolname = %s", name):
                    with contextlib.suppress(*_DUPLICATE):
                        conn.execute(sql.SQL("CREATE ROLE {} WITH {}").format(role, options))
                conn.execute(sql.SQL("ALTER ROLE {} WITH {}").format(role, options))
                if not superuser:  # to make it a database's owner, and to restore as it
                    conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(role))
                # A CREATE DATABASE cut short by a crash leaves an invalid database (PostgreSQL 15.4+
                # marks it so): nothing can connect to it, and PostgreSQL's own remedy is to drop it.
                if _exists(conn, "SELECT 1 FROM pg_database WHERE datname = %s AND datconnlimit = -2", name):
                    conn.execute(sql.SQL("DROP DATABASE {}").format(role))
                if not _exists(conn, "SELECT 1 FROM pg_database WHERE datname = %s", name):
                    with contextlib.suppress(*_DUPLICATE):
                        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(role, role))
                conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(role, role))
                conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(role))
            self._seal_schema(name)
        return Access(
            kind=BackingKind.postgres,
            host=self.host,
            port=self.port,
            username=name,
            password=password,
            database=name,
            unix_socket=self.unix_socket,
            unix_socket_owner=self.unix_socket_owner,
        )

    def remove(self, name: str) -> None:
        role = sql.Identifier(_checked(name))
        with (
            _translated(f"removing the database and role {name}"),
            self._connect() as conn,
            _locked(conn, name),
        ):
            has_role = _exists(conn, "SELECT 1 FROM pg_roles WHERE rolname = %s", name)
            if has_role:  # no new session may start while the old ones are ended
                conn.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(role))
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE (datname = %s OR usename = %s) AND pid <> pg_backend_pid()",
                (name, name),
            )
            force = sql.SQL(" WITH (FORCE)" if conn.info.server_version >= 130000 else "")
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}{}").format(role, force))
            if has_role:
                # Privileges it holds on shared objects (another database's CONNECT) would block DROP ROLE.
                conn.execute(sql.SQL("DROP OWNED BY {}").format(role))
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(role))

    def names(self) -> set[str]:
        with _translated("listing envhub's databases and roles"), self._connect() as conn:
            rows = conn.execute(
                "SELECT datname FROM pg_database UNION SELECT rolname FROM pg_roles"
            ).fetchall()
        return {row[0] for row in rows if is_envhub_name(row[0])}

    def dump(self, name: str, path: Path) -> Dump:
        argv = [
            str(self._binary("pg_dump")),
            "-Fc",
            f"--compress={DUMP_COMPRESSION}",
            "--no-password",
            "--dbname",
            self._conninfo(_checked(name)),
        ]
        started = time.monotonic()
        digest = hashlib.sha256()
        size = 0
        with tempfile.TemporaryFile() as stderr:
            try:
                with path.open("wb") as out:
                    process = subprocess.Popen(
                        argv, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL, env=self._env()
                    )
                    assert process.stdout is not None
                    with process:
                        while chunk := process.stdout.read(_CHUNK):
                            out.write(chunk)
                            digest.update(chunk)
                            size += len(chunk)
                if process.returncode != 0:
                    _tool_failed("pg_dump", name, process.returncode, stderr)
            except BaseException:
                path.unlink(missing_ok=True)
                raise
        return Dump(path=path, size_bytes=size, sha256=digest.hexdigest(), seconds=time.monotonic() - started)

    def restore(self, name: str, path: Path) -> None:
        argv = [
            str(self._binary("pg_restore")),
            "--no-password",
            "--clean",
            "--if-exists",
            "--no-owner",
            "--no-privileges",
            f"--role={_checked(name)}",
            "--single-transaction",
            "--dbname",
            self._conninfo(name),
            str(path),
        ]
        with tempfile.TemporaryFile() as stderr:
            done = subprocess.run(
                argv,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                stdin=subprocess.DEVNULL,
                env=self._env(),
                check=False,
            )
            if done.returncode != 0:
                _tool_failed("pg_restore", name, done.returncode, stderr)
        with _translated(f"sealing the restored database {name}"):
            self._seal_schema(name)

    def check(self, name: str, path: Path) -> RestoreCheck:
        listed = subprocess.run(
            [str(self._binary("pg_restore")), "--list", str(path)],
            capture_output=True,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        if listed.returncode != 0:
            tail = listed.stderr[-2000:].decode(errors="replace").strip()
            raise BackingServiceError(f"pg_restore could not read the dump of {name}: {tail}")
        tables = _dumped_tables(listed.stdout.decode(errors="replace"))
        rows, missing = 0, []
        with _translated(f"checking the restored database {_checked(name)}"), self._connect(name) as conn:
            for schema, table in tables:
                found = conn.execute("SELECT to_regclass(%s)", (f'"{schema}"."{table}"',)).fetchone()
                if not found or found[0] is None:
                    missing.append(f"{schema}.{table}")
                    continue
                counted = conn.execute(
                    sql.SQL("SELECT count(*) FROM {}.{}").format(
                        sql.Identifier(schema), sql.Identifier(table)
                    )
                ).fetchone()
                rows += int(counted[0]) if counted else 0
        return RestoreCheck(tables=len(tables), rows=rows, missing=tuple(missing))

    def revoke_connect(self, *databases: str) -> None:
        """Nobody but superusers and owners may connect to ``databases`` (the server's own, for one
        whose every other database is an instance: the embedded one)."""
        with _translated("revoking CONNECT from PUBLIC"), self._connect() as conn:
            for database in databases:
                conn.execute(
                    sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(
                        sql.Identifier(database)
                    )
                )

    # -- helpers ----------------------------------------------------------------------------------

    def _connect(self, database: str | None = None) -> psycopg.Connection[Any]:
        params = dict(self._params)
        if database is not None:
            params["dbname"] = database
        return psycopg.connect(**params, autocommit=True)

    def _seal_schema(self, name: str) -> None:
        """Nobody but the owner uses schema ``public``; the instance's role may create in it.

        Before PostgreSQL 15 the schema belonged to the bootstrap superuser and
        PUBLIC could create in it: with PUBLIC's rights gone, the role needs
        to own it.
        """
        with self._connect(name) as conn:
            conn.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
            if not _exists(conn, "SELECT 1 WHERE has_schema_privilege(%s, 'public', 'CREATE')", name):
                conn.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(name)))

    def _binary(self, name: str) -> Path:
        return find_binary(name, bin_dir=self._bin_dir)

    def _conninfo(self, database: str) -> str:
        """The admin connection to ``database`` for a command line: everything but the password."""
        shown = {key: value for key, value in self._params.items() if key not in ("password", "sslpassword")}
        return make_conninfo("", **{**shown, "dbname": database})

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        if "password" in self._params:
            env["PGPASSWORD"] = str(self._params["password"])
        return env


@contextlib.contextmanager
def _locked(conn: psycopg.Connection[Any], name: str) -> Iterator[None]:
    """One ``ensure``/``remove`` of an instance at a time on this server (released with the session)."""
    key = f"envhub-instance:{name}"
    conn.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (key,))
    try:
        yield
    finally:
        if not conn.closed:
            conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (key,))


def _dumped_tables(listing: str) -> list[tuple[str, str]]:
    """(schema, table) of every ``TABLE DATA`` entry in ``pg_restore --list`` output.

    An entry reads ``3345; 0 16390 TABLE DATA public items owner``; names with
    spaces are not split reliably by pg_restore's listing, so such a table is
    counted by the name as listed and reported missing if it cannot be found.
    """
    found: list[tuple[str, str]] = []
    for line in listing.splitlines():
        if line.startswith(";") or " TABLE DATA " not in line:
            continue
        fields = line.split(" TABLE DATA ", 1)[1].split(" ")
        if len(fields) >= 2:
            found.append((fields[0], fields[1]))
    return found


def _exists(conn: psycopg.Connection[Any], query: str, name: str) -> bool:
    return conn.execute(query, (name,)).fetchone() is not None


def _is_superuser(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
    return bool(row and row[0])


def _tool_failed(tool: str, name: str, returncode: int, stderr: Any) -> NoReturn:
    stderr.seek(0)
    tail = stderr.read()[-2000:].decode(errors="replace").strip()
    error = BackingServiceUnavailable if _UNREACHABLE.search(tail) else BackingServiceError
    raise error(f"{tool} of {name} failed (exit {returncode}): {tail}")
