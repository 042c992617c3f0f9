"""Engine and sessions.

One engine per database URL per process. SQLite gets WAL, a busy timeout and
foreign keys so the web process and the worker can share the file safely.

Two kinds of session:

* :func:`session_scope` for a unit of work that may write. On SQLite its
  transactions are ``BEGIN IMMEDIATE``: they take the database's single write
  lock up front and hold it until they end.
* :func:`read_session` for work that only reads (lists, the audit export, the
  chain check). On SQLite its transactions are plain (deferred) ``BEGIN``: in
  WAL mode a reader sees a snapshot and never holds the write lock, so a slow
  reader cannot stall writers. The database refuses any write made through it
  (SQLite ``PRAGMA query_only``, PostgreSQL ``READ ONLY`` transactions), so a
  read path that starts writing fails loudly instead of quietly taking locks.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, create_engine

from envhub.config import get_settings
from envhub.private_files import private_file

log = logging.getLogger(__name__)

# Execution option marking connections of read_session (see _configure_sqlite).
READ_ONLY = "envhub_read_only"


@functools.cache
def engine_for(url: str) -> Engine:
    return make_engine(url)


def read_only_options(engine: Engine) -> dict[str, Any]:
    options: dict[str, Any] = {READ_ONLY: True}
    if engine.dialect.name == "postgresql":
        options["postgresql_readonly"] = True  # reset when the connection goes back to the pool
    return options


@functools.cache
def read_engine_for(url: str) -> Engine:
    """The same engine and pool, with every connection checked out read-only."""
    engine = engine_for(url)
    return engine.execution_options(**read_only_options(engine))


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
    def _begin(connection: Any) -> None:
        # Writers take the write lock up front. A deferred transaction that
        # reads and then writes fails at once (SQLITE_BUSY, not retried) when
        # another process wrote in between; the web process and the workers
        # share this file, so every writing transaction is short and immediate.
        # Readers begin deferred and may not write at all, so they never need
        # the lock (pragmas only take effect outside a transaction).
        options = connection.get_execution_options()
        if options.get("sqlite_foreign_keys") is False:
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        read_only = bool(options.get(READ_ONLY))
        connection.exec_driver_sql(f"PRAGMA query_only={'ON' if read_only else 'OFF'}")
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def get_engine() -> Engine:
    return engine_for(get_settings().database_url)


def warm() -> Engine:
    """The engine, with its driver imported and the server known (one connection made and pooled).

    A process calls it before its first request or job would pay for both. A
    database that does not answer is left for that request or job to report.
    """
    engine = get_engine()
    try:
        with engine.connect():
            pass
    except SQLAlchemyError as exc:
        log.warning("database not reachable yet: %s", exc)
    return engine


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session for one unit of work; callers commit explicitly."""
    with Session(get_engine(), expire_on_commit=False) as session:
        yield session


@contextmanager
def read_session() -> Iterator[Session]:
    """A session that only reads: deferred transactions, writes refused.

    End its transaction (``session.commit()``) between long pauses, as the
    audit export does between pages: on PostgreSQL an open transaction pins
    old row versions, and on SQLite an open reader stops the WAL from being
    checkpointed.
    """
    with Session(read_engine_for(get_settings().database_url), expire_on_commit=False) as session:
        yield session


def begin_read(session: Session) -> None:
    """Start the session's next transaction read-only, as in :func:`read_session`.

    For a use case that was handed a session and reads a lot before it
    writes a little (the chain check): its reads then hold no write lock.
    Ends (commits) the transaction in progress first.
    """
    if session.in_transaction():
        session.commit()
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    session.connection(execution_options=read_only_options(engine))
