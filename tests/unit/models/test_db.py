"""Read-only sessions: deferred on SQLite, refused writes everywhere, and no trace left in the pool."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from envhub.config import override_settings
from envhub.models.db import begin_read, engine_for, make_engine, read_session
from tests.conftest import build_settings


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        found = f"sqlite:///{tmp_path / 'db.sqlite'}"
    else:
        database_url: str = request.getfixturevalue("database_url")
        if not database_url.startswith("postgresql"):
            pytest.fail(f"this test needs PostgreSQL; the session database is {database_url}")
        found = database_url
    with engine_for(found).begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS scratch"))
        conn.execute(text("CREATE TABLE scratch (n integer)"))
    with override_settings(build_settings(data_dir=tmp_path, database_url=found)):
        yield found
    with engine_for(found).begin() as conn:
        conn.execute(text("DROP TABLE scratch"))
    if request.param == "sqlite":
        engine_for(found).dispose()


def count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM scratch")).scalar_one())


def test_a_read_session_refuses_writes(url: str) -> None:
    with read_session() as session:
        assert session.execute(text("SELECT count(*) FROM scratch")).scalar_one() == 0
        with pytest.raises(DBAPIError, match=r"read-?only"):
            session.execute(text("INSERT INTO scratch VALUES (1)"))
    assert count(engine_for(url)) == 0


def test_an_open_read_does_not_hold_up_a_writer(url: str) -> None:
    wrote: list[float] = []

    def writer() -> None:
        started = time.monotonic()
        with Session(engine_for(url)) as session:
            session.execute(text("INSERT INTO scratch VALUES (1)"))
            session.commit()
        wrote.append(time.monotonic() - started)

    with read_session() as session:
        session.execute(text("SELECT count(*) FROM scratch")).scalar_one()  # the transaction is open
        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        thread.join(5)
        assert wrote, "a writer waited on an open read-only transaction"
    thread.join(60)
    assert count(engine_for(url)) == 1


def test_the_pooled_connection_writes_again_after_a_read(url: str) -> None:
    engine = make_engine(url, pool_size=1, max_overflow=0)  # one connection, reused by both sessions
    try:
        with Session(engine) as session:
            begin_read(session)
            with pytest.raises(DBAPIError):
                session.execute(text("INSERT INTO scratch VALUES (1)"))
            session.rollback()
            session.execute(text("INSERT INTO scratch VALUES (2)"))  # a new, writing transaction
            session.commit()
    finally:
        engine.dispose()
    assert count(engine_for(url)) == 1


def test_begin_read_commits_what_is_pending_first(url: str) -> None:
    with Session(engine_for(url)) as session:
        session.execute(text("INSERT INTO scratch VALUES (3)"))
        begin_read(session)
        assert session.execute(text("SELECT n FROM scratch")).scalars().all() == [3]
        with pytest.raises(DBAPIError):
            session.execute(text("DELETE FROM scratch"))
