"""The PostgreSQL adapters of the backing-services port, against real PostgreSQL servers.

Two servers from the machine's binaries: a private one started as an
operator's would be (tests/support/postgres.py), with password authentication
for every role but its admin, for :class:`PostgresServer`; and
:class:`EmbeddedPostgres` itself, in a temporary folder. Isolation is checked
by logging in as the instance roles, as a workload would.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors as pg_errors

from envhub.errors import BackingServiceError, BackingServiceUnavailable
from envhub.integrations.backing.base import BackingKind, instance_name
from envhub.integrations.backing.embedded_postgres import EmbeddedPostgres
from envhub.integrations.backing.postgres import PostgresServer
from tests.support import postgres as support
from tests.support.components import require
from tests.support.net import free_port

# The admin logs in without a password (as an operator's server lets its admin in over a
# private channel); every other role must give its password, as on a real server.
HBA = """\
local all postgres trust
host all postgres 127.0.0.1/32 trust
local all all scram-sha-256
host all all 127.0.0.1/32 scram-sha-256
"""


@pytest.fixture(scope="module")
def server() -> Iterator[support.PostgresServer]:
    require("postgresql")
    with support.private_postgres() as pg:
        (pg.folder / "data" / "pg_hba.conf").write_text(HBA)
        with psycopg.connect(pg.admin_dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_reload_conf()")
        yield pg


@pytest.fixture
def databases(server: support.PostgresServer) -> Iterator[PostgresServer]:
    adapter = PostgresServer(server.admin_dsn, host="127.0.0.1", port=server.port)
    yield adapter
    for name in adapter.names():
        adapter.remove(name)


@pytest.fixture(scope="module")
def embedded() -> Iterator[EmbeddedPostgres]:
    require("postgresql")
    # Parents searchable by the server's account (the `postgres` user when the tests run as root).
    base = Path(tempfile.mkdtemp(prefix="envhub-test-embedded-pg-"))
    base.chmod(0o711)
    server = EmbeddedPostgres(base / "postgres", port=free_port())
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def _login(port: int, name: str, password: str, *, database: str = "", host: str = "127.0.0.1") -> Any:
    return psycopg.connect(
        host=host, port=port, user=name, password=password, dbname=database or name, connect_timeout=5
    )


def _admin(server: support.PostgresServer, database: str = "postgres") -> Any:
    return psycopg.connect(server.admin_dsn.replace("dbname=postgres", f"dbname={database}"), autocommit=True)


def test_ensure_gives_a_role_that_owns_its_database_and_nothing_more(
    server: support.PostgresServer, databases: PostgresServer
) -> None:
    name = instance_name(11, "db")
    access = databases.ensure(name, password="pw-one")

    assert (access.kind, access.host, access.port) == (BackingKind.postgres, "127.0.0.1", server.port)
    assert (access.username, access.database, access.password) == (name, name, "pw-one")
    assert "pw-one" not in repr(access)
    with _login(server.port, name, "pw-one") as conn:
        conn.execute("CREATE TABLE notes (body text)")
        conn.execute("INSERT INTO notes VALUES ('kept')")
        conn.commit()
        assert conn.execute("SELECT body FROM notes").fetchall() == [("kept",)]
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        _login(server.port, name, "wrong")
    with _admin(server) as conn:
        row = conn.execute(
            "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, rolcanlogin"
            " FROM pg_roles WHERE rolname = %s",
            (name,),
        ).fetchone()
        assert row == (False, False, False, False, False, True)
        verifier = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (name,)).fetchone()
        assert verifier[0].startswith("SCRAM-SHA-256$")


def test_an_instance_holds_at_most_its_connection_limit(server: support.PostgresServer) -> None:
    """One environment cannot take the shared server's every connection; the admin is not counted."""
    limited = PostgresServer(server.admin_dsn, host="127.0.0.1", port=server.port, connection_limit=2)
    name = instance_name(14, "db")
    limited.ensure(name, password="pw")
    try:
        with _login(server.port, name, "pw"), _login(server.port, name, "pw"):
            with pytest.raises(psycopg.OperationalError, match="too many connections for role"):
                _login(server.port, name, "pw")
            with _admin(server, name) as admin:  # envhub's own (dumps, restores) still gets in
                assert admin.execute("SELECT 1").fetchone() == (1,)
    finally:
        limited.remove(name)


def test_a_role_cannot_reach_another_instance_even_when_let_in(
    server: support.PostgresServer, databases: PostgresServer
) -> None:
    first, second = instance_name(12, "db"), instance_name(13, "db")
    databases.ensure(first, password="pw-first")
    databases.ensure(second, password="pw-second")
    with _login(server.port, second, "pw-second") as conn:
        conn.execute("CREATE TABLE secrets (body text)")
        conn.execute("INSERT INTO secrets VALUES ('of the second')")
        conn.commit()

    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        _login(server.port, first, "pw-first", database=second)
    # Let in by a mistaken grant, it still reads nothing and creates nothing there.
    with _admin(server) as conn:
        conn.execute(f'GRANT CONNECT ON DATABASE "{second}" TO "{first}"')
    with _login(server.port, first, "pw-first", database=second) as conn:
        with pytest.raises(pg_errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM public.secrets")
        conn.rollback()
        with pytest.raises(pg_errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE public.planted (x int)")
    databases.remove(first)  # its CONNECT grant on the other database must not block DROP ROLE
    assert databases.names() == {second}


def test_ensure_is_idempotent_and_repairs_a_half_made_instance(
    server: support.PostgresServer, databases: PostgresServer
) -> None:
    only_role, loose_database = instance_name(14, "db"), instance_name(15, "db")
    with _admin(server) as conn:
        conn.execute(f'CREATE ROLE "{only_role}" SUPERUSER')  # killed after CREATE ROLE, and tampered
        conn.execute(f'CREATE DATABASE "{loose_database}"')  # killed after CREATE DATABASE: admin owns it
    with _admin(server, loose_database) as conn:
        conn.execute("GRANT ALL ON SCHEMA public TO PUBLIC")

    for _ in range(2):
        databases.ensure(only_role, password="pw-a")
        databases.ensure(loose_database, password="pw-b")

    with _login(server.port, only_role, "pw-a") as conn:
        superuser = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
        assert superuser == (False,)
    with _login(server.port, loose_database, "pw-b") as conn:
        conn.execute("CREATE TABLE t (x int)")
        conn.commit()
    with _admin(server) as conn:
        owners = conn.execute(
            "SELECT datname, pg_get_userbyid(datdba), has_database_privilege('public', oid, 'CONNECT')"
            " FROM pg_database WHERE datname IN (%s, %s) ORDER BY datname",
            (only_role, loose_database),
        ).fetchall()
        assert owners == [(only_role, only_role, False), (loose_database, loose_database, False)]
    with _admin(server, loose_database) as conn:
        assert conn.execute("SELECT has_schema_privilege('public', 'public', 'USAGE')").fetchone() == (False,)


def test_ensure_with_a_new_password_rotates_it(
    server: support.PostgresServer, databases: PostgresServer
) -> None:
    name = instance_name(16, "db")
    databases.ensure(name, password="old-password")
    databases.ensure(name, password="new-password")

    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        _login(server.port, name, "old-password")
    with _login(server.port, name, "new-password") as conn:
        assert conn.execute("SELECT current_user").fetchone() == (name,)


def test_remove_drops_both_even_when_in_use_and_is_quiet_twice(
    server: support.PostgresServer, databases: PostgresServer
) -> None:
    name, other = instance_name(17, "db"), instance_name(18, "cache")
    databases.ensure(name, password="pw")
    databases.ensure(other, password="pw")
    with _admin(server) as conn:
        conn.execute("CREATE DATABASE envhub_e19_")  # not an instance name: the operator's, not ours
        conn.execute("CREATE ROLE envhub_reader")
    try:
        assert databases.names() == {name, other}
        session = _login(server.port, name, "pw")  # a workload still connected

        databases.remove(name)
        databases.remove(name)

        with pytest.raises(psycopg.OperationalError):  # its session was ended
            session.execute("SELECT 1")
        assert databases.names() == {other}
        with pytest.raises(psycopg.OperationalError):
            _login(server.port, name, "pw")
        with pytest.raises(ValueError, match="not an envhub instance name"):
            databases.remove("envhub_reader")
    finally:
        with _admin(server) as conn:
            conn.execute("DROP DATABASE envhub_e19_")
            conn.execute("DROP ROLE envhub_reader")


def test_dump_then_restore_brings_rows_back_owned_by_the_instance(
    server: support.PostgresServer, databases: PostgresServer, tmp_path: Path
) -> None:
    name = instance_name(20, "db")
    databases.ensure(name, password="pw")
    with _login(server.port, name, "pw") as conn:
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, body text)")
        conn.execute("INSERT INTO items SELECT n, md5(n::text) FROM generate_series(1, 500) n")
        conn.commit()

    dump = databases.dump(name, tmp_path / "backup.dump")

    data = dump.path.read_bytes()
    assert data.startswith(b"PGDMP")  # the custom format
    assert (dump.size_bytes, dump.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert dump.seconds > 0
    with _login(server.port, name, "pw") as conn:
        conn.execute("DELETE FROM items WHERE id > 10")
        conn.execute("CREATE TABLE later (x int)")
        conn.commit()

    databases.restore(name, dump.path)
    databases.restore(name, dump.path)  # again: converges

    with _login(server.port, name, "pw") as conn:
        assert conn.execute("SELECT count(*) FROM items").fetchone() == (500,)
        owner = conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'items'").fetchone()
        assert owner == (name,)
        conn.execute("INSERT INTO items VALUES (501, 'writable after restore')")
        conn.commit()
    with _admin(server, name) as conn:
        assert conn.execute("SELECT has_schema_privilege('public', 'public', 'USAGE')").fetchone() == (False,)


def test_a_failed_restore_quotes_pg_restore(databases: PostgresServer, tmp_path: Path) -> None:
    name = instance_name(21, "db")
    databases.ensure(name, password="pw")
    garbage = tmp_path / "not-a-dump"
    garbage.write_bytes(b"this is not a dump\n")

    with pytest.raises(BackingServiceError, match=r"pg_restore of envhub_e21_db failed.*input file"):
        databases.restore(name, garbage)


def test_failures_are_envhubs_errors_without_the_password(
    server: support.PostgresServer, tmp_path: Path
) -> None:
    closed_url = f"postgresql://postgres:s3cret@127.0.0.1:{free_port()}/postgres"
    closed = PostgresServer(closed_url, host="h", port=1)
    with pytest.raises(BackingServiceUnavailable) as unavailable:
        closed.ensure(instance_name(22, "db"), password="instance-secret")
    assert "s3cret" not in str(unavailable.value)
    assert "instance-secret" not in str(unavailable.value)
    assert "s3cret" not in repr(closed)

    wrong_admin = PostgresServer(
        f"postgresql://envhub_nobody:s3cret@127.0.0.1:{server.port}/postgres", host="h", port=1
    )
    with pytest.raises(BackingServiceError) as refused:
        wrong_admin.names()
    assert not isinstance(refused.value, BackingServiceUnavailable)
    assert "s3cret" not in str(refused.value)

    no_tools = PostgresServer(server.admin_dsn, host="h", port=1, bin_dir=tmp_path)
    with pytest.raises(BackingServiceError) as missing:
        no_tools.dump(instance_name(22, "db"), tmp_path / "x.dump")
    assert "postgresql-client" in missing.value.hint


def test_embedded_server_isolates_instances_behind_passwords_on_its_socket(
    embedded: EmbeddedPostgres,
) -> None:
    name = instance_name(30, "db")
    access = embedded.ensure(name, password="socket-pw")

    assert (access.host, access.port) == ("127.0.0.1", embedded.port)
    assert access.unix_socket == str(embedded.socket_path)
    socket_dir = str(Path(access.unix_socket).parent)
    with _login(embedded.port, name, "socket-pw", host=socket_dir) as conn:
        conn.execute("CREATE TABLE t (x int)")
        conn.commit()
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        _login(embedded.port, name, "wrong", host=socket_dir)
    # Through the relay every connection comes from envhub's side: the admin needs its password too.
    with pytest.raises(psycopg.OperationalError, match="password"):
        _login(embedded.port, "postgres", "", database="postgres", host=socket_dir)
    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        _login(embedded.port, name, "socket-pw", database="postgres", host=socket_dir)
    embedded.remove(name)


def test_embedded_server_keeps_its_data_across_stop_and_start(embedded: EmbeddedPostgres) -> None:
    name = instance_name(31, "db")
    embedded.ensure(name, password="pw")
    with _login(embedded.port, name, "pw", host=str(embedded.socket_dir)) as conn:
        conn.execute("CREATE TABLE kept (x int)")
        conn.execute("INSERT INTO kept VALUES (42)")
        conn.commit()

    embedded.stop()
    embedded.stop()  # quiet when stopped
    again = EmbeddedPostgres(embedded.folder, port=embedded.port)  # envhub restarted

    assert name in again.names()
    again.ensure(name, password="pw")
    with _login(embedded.port, name, "pw", host=str(embedded.socket_dir)) as conn:
        assert conn.execute("SELECT x FROM kept").fetchall() == [(42,)]
    embedded.stop()  # behind the first object's back: its next call starts the server again
    assert name in embedded.names()
    embedded.remove(name)


def test_concurrent_starts_and_ensures_make_one_database(embedded: EmbeddedPostgres) -> None:
    name = instance_name(32, "db")
    embedded.stop()
    workers = [EmbeddedPostgres(embedded.folder, port=embedded.port) for _ in range(3)]  # three processes
    failures: list[BaseException] = []
    barrier = threading.Barrier(len(workers))

    def run(worker: EmbeddedPostgres) -> None:
        try:
            barrier.wait()
            worker.ensure(name, password="same")
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(worker,)) for worker in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert failures == []
    assert embedded.names() == {name}
    with _login(embedded.port, name, "same", host=str(embedded.socket_dir)) as conn:
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,)).fetchone() == (1,)
    embedded.remove(name)


def test_an_admin_with_createdb_and_createrole_only_is_enough(
    server: support.PostgresServer, tmp_path: Path
) -> None:
    """The usual managed-cloud admin (RDS, Cloud SQL): no superuser."""
    with _admin(server) as conn:
        conn.execute("CREATE ROLE envhub_operator LOGIN CREATEDB CREATEROLE PASSWORD 'operator-pw'")
    limited = PostgresServer(
        f"postgresql://envhub_operator:operator-pw@127.0.0.1:{server.port}/postgres", host="h", port=1
    )
    name = instance_name(23, "db")
    try:
        limited.ensure(name, password="pw")
        limited.ensure(name, password="pw2")
        with _login(server.port, name, "pw2") as conn:
            conn.execute("CREATE TABLE items AS SELECT 1 AS x")
            conn.commit()
        dump = limited.dump(name, tmp_path / "limited.dump")
        limited.restore(name, dump.path)
        with _login(server.port, name, "pw2") as conn:
            owner = conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'items'").fetchone()
            assert owner == (name,)
        assert limited.names() == {name}
        limited.remove(name)
        assert limited.names() == set()
    finally:
        with _admin(server) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'DROP ROLE IF EXISTS "{name}"')
            conn.execute("DROP ROLE envhub_operator")


def test_embedded_server_as_root_says_when_its_account_cannot_reach_the_folder(tmp_path: Path) -> None:
    require("root")
    hidden = tmp_path / "private"
    hidden.mkdir(mode=0o700)  # root's own folder: the `postgres` user cannot search it

    with pytest.raises(BackingServiceError, match="cannot reach") as refused:
        EmbeddedPostgres(hidden / "services" / "postgres", port=free_port()).ensure(
            instance_name(33, "db"), password="pw"
        )
    assert "parent folder" in refused.value.hint


def test_ensure_replaces_a_database_a_crash_left_invalid(
    server: support.PostgresServer, databases: PostgresServer
) -> None:
    name = instance_name(16, "db")
    databases.ensure(name, password="pw")
    with _admin(server) as conn:  # what PostgreSQL records for a CREATE DATABASE cut short
        conn.execute("UPDATE pg_database SET datconnlimit = -2 WHERE datname = %s", (name,))
    databases.ensure(name, password="pw")
    with _login(server.port, name, "pw") as conn:
        assert conn.execute("SELECT current_database()").fetchone() == (name,)
