"""Helpers the use cases share: pages, audit records (authorization lives in access.py).

A use case records its audit event with ``with audited(...) as target:``; the
bare :func:`audit` is for events that are not a use case of their own (a
phase transition seen by a job, a sign-in step).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlmodel import Session

from envhub.domain.principals import Principal
from envhub.errors import EnvhubError
from envhub.models import AuditEvent
from envhub.models.audit_chain import record
from envhub.services.access import authorize, authorize_environment, team_role, teams_of

__all__ = [
    "AuditTarget",
    "Page",
    "audit",
    "audited",
    "authorize",
    "authorize_environment",
    "clamp_page",
    "contains",
    "team_role",
    "teams_of",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_PAGE_SIZE = 200


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    total: int
    offset: int
    limit: int
    next_cursor: str | None = None  # continues after the last item (services/cursors.py); None at the end

    @property
    def has_next(self) -> bool:
        return self.offset + self.limit < self.total


def clamp_page(offset: int, limit: int) -> tuple[int, int]:
    return max(0, offset), max(1, min(limit, MAX_PAGE_SIZE))


def contains(value: str) -> str:
    """A case-insensitive LIKE pattern (``escape="\\"``) matching ``value`` anywhere, taken literally."""
    escaped = value.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def audit(
    session: Session,
    actor: Principal,
    action: str,
    *,
    target_type: str,
    target_id: int | None,
    target: str,
    team_id: int | None,
    outcome: str = "success",
    error_code: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    event = AuditEvent(
        actor_id=actor.user_id,
        actor=actor.name,
        principal_type=actor.type.value,
        token_id=actor.token_id,
        source_ip=actor.source_ip,
        user_agent=actor.user_agent,
        action=action,
        target_type=target_type,
        target_id=target_id,
        target=target,
        team_id=team_id,
        outcome=outcome,
        error_code=error_code,
        details=details or {},
    )
    record(session, event)  # chained at commit (models/audit_chain.py)
    return event


@dataclass(slots=True)
class AuditTarget:
    """What a use case acts on, filled in as the use case learns it, and recorded once.

    ``details`` go into the success record; set ``record = False`` when the
    call turned out to change nothing worth a record (asking twice, say).
    """

    type: str
    id: int | None = None
    name: str = ""
    team_id: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
    record: bool = True


@contextmanager
def audited(session: Session, actor: Principal, action: str, target: AuditTarget) -> Iterator[AuditTarget]:
    """Run a use case as one unit of work with exactly one audit record.

    When the block ends, the success record joins the block's changes and all
    are committed together. When it raises an :class:`EnvhubError`, its changes
    are rolled back and only a failure record (with the error's code) is
    committed. Failures that reveal nothing (not_found before the target is
    known) are recorded the same way, with whatever the block filled into
    ``target``.
    """
    try:
        yield target
    except EnvhubError as exc:
        session.rollback()
        try:
            _record(session, actor, action, target, outcome="failure", error=exc)
            session.commit()
        except Exception:  # the original error matters more than its audit row
            session.rollback()
            log.exception("could not record the failure of %s", action)
        raise
    if target.record:
        _record(session, actor, action, target, outcome="success")
    session.commit()


def _record(
    session: Session,
    actor: Principal,
    action: str,
    target: AuditTarget,
    *,
    outcome: str,
    error: EnvhubError | None = None,
) -> None:
    audit(
        session,
        actor,
        action,
        target_type=target.type,
        target_id=target.id,
        target=target.name,
        team_id=target.team_id,
        outcome=outcome,
        error_code=error.code if error else None,
        details={"message": error.message} if error else target.details,
    )
