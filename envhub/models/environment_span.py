"""Spans of an environment's life: running or asleep, from when to when, reserving what.

Spans are opened and closed in one place, here, by a session hook that sees
every change of ``environment.phase`` whoever made it (``set_phase`` in the
jobs, the services' direct transitions to ``deleting``, the reconciler), so
every path (provision, sleep, wake, failure, delete) is counted the same way.
When a flush changes a phase into another usage state
(:func:`envhub.domain.costs.usage_state`), the environment's open span is
closed and, if the new state is counted, a new one opened, in the same
transaction as the phase change. At most one span per environment is open.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, Index, event, inspect
from sqlmodel import Field, Session, SQLModel, col, select

from envhub.domain.costs import Span, UsageState, reservation, usage_state
from envhub.domain.phases import Phase
from envhub.models.base import EnumText, UTCDateTime, utcnow
from envhub.models.environment import Environment

_PENDING = "envhub.environment_span.pending"


class EnvironmentSpan(SQLModel, table=True):
    __tablename__ = "environment_span"
    __table_args__ = (
        # A window's spans: those of some environments that end after its start (or are open).
        Index("ix_environment_span_environment_ended", "environment_id", "ended_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    environment_id: int = Field(foreign_key="environment.id", ondelete="CASCADE")
    state: UsageState = Field(sa_column=Column(EnumText(UsageState), nullable=False))
    started_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    ended_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    # What it reserves while running (requests total of its clamped quota); None on the spans
    # migration 0019 opened for environments already live: read from the environment's spec then.
    cpu_millicores: int | None = Field(default=None)
    memory_bytes: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))

    def as_span(self, spec: dict[str, Any]) -> Span:
        cpu, memory = self.cpu_millicores, self.memory_bytes
        if cpu is None or memory is None:
            reserved = reservation(spec)
            cpu, memory = reserved.cpu_millicores, reserved.memory_bytes
        return Span(
            state=self.state,
            started_at=self.started_at,
            ended_at=self.ended_at,
            cpu_millicores=cpu,
            memory_bytes=memory,
        )


def _phase(value: Any) -> Phase | None:
    return Phase(value) if value is not None else None


@event.listens_for(Session, "after_flush")
def _note_phase_changes(session: Session, _context: Any) -> None:
    """Collect (environment, new state, spec) for every flushed phase change of usage state."""
    changes: list[tuple[int, UsageState | None, dict[str, Any]]] = []
    for obj in (*session.new, *session.dirty):
        if not isinstance(obj, Environment) or obj.id is None:
            continue
        history = inspect(obj).attrs.phase.history
        if not history.added:
            continue
        before = usage_state(_phase(history.deleted[0])) if history.deleted else None
        after = usage_state(_phase(history.added[0]))
        if before != after:
            changes.append((obj.id, after, dict(obj.spec or {})))
    if changes:
        session.info.setdefault(_PENDING, []).extend(changes)


@event.listens_for(Session, "after_flush_postexec")
def _open_and_close_spans(session: Session, _context: Any) -> None:
    changes: list[tuple[int, UsageState | None, dict[str, Any]]] = session.info.pop(_PENDING, [])
    if not changes:
        return
    now = utcnow()
    with session.no_autoflush:
        ids = [environment_id for environment_id, _state, _spec in changes]
        open_spans = session.exec(
            select(EnvironmentSpan).where(
                col(EnvironmentSpan.environment_id).in_(ids), col(EnvironmentSpan.ended_at).is_(None)
            )
        ).all()
        for span in open_spans:
            span.ended_at = max(now, span.started_at)
            session.add(span)
        for environment_id, state, spec in changes:
            if state is None:
                continue
            reserved = reservation(spec)
            running = state is UsageState.running
            session.add(
                EnvironmentSpan(
                    environment_id=environment_id,
                    state=state,
                    started_at=now,
                    cpu_millicores=reserved.cpu_millicores if running else 0,
                    memory_bytes=reserved.memory_bytes if running else 0,
                )
            )


@event.listens_for(Session, "after_soft_rollback")
def _forget(session: Session, _previous: Any) -> None:
    session.info.pop(_PENDING, None)
