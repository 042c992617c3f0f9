"""Fixtures shared by envhub's tests: a real database, a real Redis, settings.

* Database: a private PostgreSQL server per test process (tests/support/postgres.py,
  started from the machine's binaries; never the machine's own server), with one
  database migrated by Alembic for the session. A test marked
  ``@pytest.mark.database("sqlite")`` runs on a migrated SQLite file instead, and
  ``@pytest.mark.database("sqlite", "postgresql")`` runs once on each. Tables are
  emptied before each test that uses :func:`db`.
* Redis: a private ``redis-server`` per test process, configured as the embedded
  one (tests/support/redis_server.py: loopback, a password); flushed per test.
* Object store: moto's standalone S3 server per test process (tests/support/s3_server.py),
  started by the tests that ask for :func:`s3_server`; each makes its own bucket.
* Settings: :func:`settings` overrides envhub's settings with a data folder in
  the test's tmp_path and the database and Redis above.
* Components: a missing one fails the tests that need it, never skips them
  (tests/support/components.py), and any skip not on tests/allowed-skips.toml
  fails the run (tests/support/skips.py).

Nothing here is autouse: tests/browser and tests/cluster share this conftest.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel

import envhub.models  # noqa: F401  (registers every table)
from envhub.config import Settings, override_settings
from envhub.launcher import migrate
from envhub.models import Project
from envhub.models.db import engine_for
from envhub.services import ports
from envhub.services.projects import create_project
from envhub.wiring import install as wire_adapters
from tests.support.components import require
from tests.support.db import track
from tests.support.postgres import PostgresServer, private_postgres
from tests.support.redis_server import private_redis
from tests.support.s3_server import S3Server, private_s3
from tests.support.world import World, make_world

# The adapters the settings choose, as an entry point installs them (built on first use).
wire_adapters()

pytest_plugins = [
    "pytester",
    "tests.support.skips",
    "tests.support.figures",
    "tests.support.scheduling",
    "tests.support.cluster",
]

DATABASES = ("postgresql", "sqlite")
# The use cases and jobs run on both databases envhub supports (the embedded
# default is SQLite), as if their tests were marked database("postgresql", "sqlite").
_BOTH_DATABASES = ("tests/services/", "tests/jobs/")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        'database(*kinds): run on these databases ("postgresql", the default, and/or "sqlite")',
    )


def pytest_report_header() -> str:
    return "envhub database: a private PostgreSQL per test process (SQLite where marked)"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "database_kind" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("database")
    if marker is not None:
        kinds = marker.args or ("postgresql",)
    elif metafunc.definition.nodeid.startswith(_BOTH_DATABASES):
        kinds = DATABASES
    else:
        return
    unknown = set(kinds) - set(DATABASES)
    if unknown:
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: unknown database {sorted(unknown)}")
    metafunc.parametrize("database_kind", kinds, indirect=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """This test process's own PostgreSQL server."""
    require("postgresql")
    with private_postgres() as server:
        yield server


def _migrated(url: str, scratch: Path) -> str:
    migrate(build_settings(data_dir=scratch, database_url=url))
    return url


@pytest.fixture(scope="session")
def database_url(postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated PostgreSQL database for the whole session."""
    url = _migrated(postgres_server.create_database("envhub_test"), tmp_path_factory.mktemp("database"))
    try:
        yield url
    finally:
        engine_for(url).dispose()


@pytest.fixture(scope="session")
def sqlite_database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated SQLite file for the whole session, for tests marked ``database("sqlite")``."""
    scratch = tmp_path_factory.mktemp("sqlite")
    url = _migrated(f"sqlite:///{scratch / 'envhub.db'}", scratch)
    try:
        yield url
    finally:
        engine_for(url).dispose()


@pytest.fixture
def database_kind(request: pytest.FixtureRequest) -> str:
    """Which database this test runs on (see the ``database`` marker)."""
    kind: str = getattr(request, "param", "postgresql")
    return kind


@pytest.fixture
def active_database_url(database_kind: str, request: pytest.FixtureRequest) -> str:
    """The session database of this test's kind."""
    fixture = "database_url" if database_kind == "postgresql" else "sqlite_database_url"
    url: str = request.getfixturevalue(fixture)
    return url


def clean_tables(engine: Engine) -> None:
    tables = [table.name for table in SQLModel.metadata.sorted_tables]
    # DELETE, not TRUNCATE: on tables this small it is much faster on PostgreSQL.
    # Ids keep growing across tests there; no test depends on their values.
    with engine.begin() as conn:
        for name in reversed(tables):
            conn.execute(text(f"DELETE FROM {name}"))


@pytest.fixture
def db(active_database_url: str) -> Engine:
    """The session database, emptied for this test."""
    engine = engine_for(active_database_url)
    clean_tables(engine)
    return engine


@pytest.fixture
def session(db: Engine) -> Iterator[Session]:
    with Session(db, expire_on_commit=False) as session:
        yield track(session)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """This test process's own redis-server (password in the URL)."""
    require("redis-server")
    with private_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture
def redis(redis_url: str) -> Iterator[Redis]:
    """A client on the test Redis database, flushed for this test."""
    client = Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """This test process's own S3-compatible server (moto's standalone server); a bucket per test."""
    require("moto")
    with private_s3(tmp_path_factory.mktemp("s3")) as server:
        yield server


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
    active_database_url: str,
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
        database_url=active_database_url,
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
