"""Engine and sessions.

One engine per database URL per process. SQLite gets WAL, a busy timeout and
foreign keys so the web process and the worker can share the file safely.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, create_engine

from envhub.config import get_settings
from envhub.private_files import private_file


@functools.cache
def engine_for(url: str) -> Engine:
    return make_engine(url)


def make_engine(url: str, **kwargs: Any) -> Engine:
    connect_args: dict[str, Any] = {}
    if url.startswith("sqlite"):
        connect_args = {"check_same_thread": False, "timeout": 30}
        _private_database_file(url)
    engine = create_engine(url, connect_args=connect_args, pool_pre_ping=True, **kwargs)
    if url.startswith("sqlite"):
        _configure_sqlite(engine)
    return engine


def _private_database_file(url: str) -> None:
    """Create the SQLite file 0600 before SQLite does (it would make it 0644 minus the
    umask); its -wal and -shm files take the database file's mode."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if path.parent.is_dir():
        private_file(path)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Any) -> None:
        # Take the write lock up front. A deferred transaction that reads and
        # then writes fails at once (SQLITE_BUSY, not retried) when another
        # process wrote in between; the web process and the workers share this
        # file, so every transaction is short and immediate instead.
        if connection.get_execution_options().get("sqlite_foreign_keys") is False:
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")  # only takes effect outside a transaction
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def get_engine() -> Engine:
    return engine_for(get_settings().database_url)


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session for one unit of work; callers commit explicitly."""
    with Session(get_engine(), expire_on_commit=False) as session:
        yield session
