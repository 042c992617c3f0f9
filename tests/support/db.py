"""Reading the database the way another process would: a fresh session each time.

On SQLite every envhub transaction is ``BEGIN IMMEDIATE`` (it takes the write
lock up front), so a test's own long-lived session that merely re-read an
expired attribute would block every other connection until it ends. The
helpers here first end the transactions of the test sessions registered with
:func:`track`, as the end of a request would.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, col, select

from envhub.models import AuditEvent

M = TypeVar("M", bound=SQLModel)

_tracked: weakref.WeakSet[Session] = weakref.WeakSet()


def track(session: Session) -> Session:
    _tracked.add(session)
    return session


def settle() -> None:
    """End the open transaction of every tracked test session."""
    for session in list(_tracked):
        if session.in_transaction():
            session.commit()


@contextmanager
def other_session(engine: Engine) -> Iterator[Session]:
    settle()
    with Session(engine) as session:
        yield session


def fetch_all(engine: Engine, model: type[M], *where: Any) -> list[M]:
    with other_session(engine) as session:
        query = select(model).where(*where) if where else select(model)
        return list(session.exec(query.order_by(col(model.id))))  # type: ignore[attr-defined]


def fetch(engine: Engine, model: type[M], ident: int) -> M | None:
    with other_session(engine) as session:
        return session.get(model, ident)


def audit_events(engine: Engine, action: str | None = None) -> list[AuditEvent]:
    if action is None:
        return fetch_all(engine, AuditEvent)
    return fetch_all(engine, AuditEvent, AuditEvent.action == action)
