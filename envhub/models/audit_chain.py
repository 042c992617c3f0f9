"""Linking audit events into the chain, at commit, whatever code wrote them.

``record(session, event)`` queues an event on the session. When the session
commits, every other change is flushed first, then the chain head is locked
(``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite transactions already hold
the database's write lock) and the queued events get consecutive ``seq``
numbers and MACs. Taking the head lock last, after all other row locks, means
two transactions can never wait for each other in a cycle; holding it to the
commit makes concurrent appends line up one after another.

Committed events cannot be changed through the ORM: updates other than the
sealing itself and deletes raise.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from sqlalchemy import event, inspect, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapper, Session
from sqlmodel import col

from envhub.config import get_settings
from envhub.domain.audit_chain import FIELDS, GENESIS, head_mac, mac
from envhub.models.audit import AuditChainHead, AuditEvent
from envhub.models.base import utcnow

log = logging.getLogger(__name__)

_PENDING = "envhub.audit.pending"
HEAD_ID = 1
_LIMITS = {
    "actor": 200,
    "principal_type": 20,
    "action": 100,
    "target_type": 50,
    "target": 300,
    "outcome": 20,
    "error_code": 100,
    "source_ip": 64,
    "user_agent": 300,
}


def chain_key() -> bytes:
    return get_settings().derived_key("audit-chain")


def record(session: Session, audit_event: AuditEvent) -> None:
    """Add ``audit_event`` to the session; it joins the chain when the session commits."""
    session.add(audit_event)
    session.info.setdefault(_PENDING, []).append(audit_event)


def event_fields(audit_event: AuditEvent) -> dict[str, Any]:
    return {name: getattr(audit_event, name) for name in FIELDS}


def _clean_text(value: str | None, limit: int) -> str | None:
    # PostgreSQL refuses NUL in text, and a too-long value must not turn an
    # audited failure into a crash: an audit row always fits.
    return None if value is None else value.replace("\x00", "\ufffd")[:limit]


def _clean_details(details: Any) -> dict[str, Any]:
    text = json.dumps(details or {}, default=str, ensure_ascii=False).replace("\\u0000", "\\ufffd")
    cleaned = json.loads(text)
    return cleaned if isinstance(cleaned, dict) else {"value": cleaned}


def _clean(audit_event: AuditEvent) -> None:
    for name, limit in _LIMITS.items():
        setattr(audit_event, name, _clean_text(getattr(audit_event, name), limit))
    audit_event.details = _clean_details(audit_event.details)


def _lock_head(session: Session) -> AuditChainHead:
    query = select(AuditChainHead).where(col(AuditChainHead.id) == HEAD_ID).with_for_update()
    head = session.execute(query).scalar_one_or_none()
    if head is not None:
        return head
    last = session.execute(
        select(col(AuditEvent.seq), col(AuditEvent.hash))
        .where(col(AuditEvent.seq).is_not(None))
        .order_by(col(AuditEvent.seq).desc())
        .limit(1)
    ).first()
    seq, last_hash = (int(last[0] or 0), str(last[1])) if last else (0, GENESIS)
    if last:  # the seal of the chain's end was removed: start a new one, loudly
        log.error("audit chain head is missing while %s events exist; recreating it", seq)
    values = {"id": HEAD_ID, "seq": seq, "last_hash": last_hash, "mac": head_mac(chain_key(), seq, last_hash)}
    values["updated_at"] = utcnow()
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    session.execute(insert(AuditChainHead).values(**values).on_conflict_do_nothing())
    return session.execute(query).scalar_one()


def link(session: Session, events: list[AuditEvent], *, keep_time: bool = False) -> None:
    """Give ``events`` their place in the chain (caller holds the transaction).

    ``keep_time`` leaves each event's own time (sealing rows written before
    the chain existed); otherwise the time is when it takes its place.
    """
    for audit_event in events:
        if not inspect(audit_event).persistent:  # not inserted yet: clean before the INSERT
            _clean(audit_event)
    session.flush()  # every other change first: the head lock is the last lock taken
    head = _lock_head(session)
    key = chain_key()
    seq, last_hash = head.seq, head.last_hash
    for audit_event in events:
        seq += 1
        _clean(audit_event)  # an event inserted early by an autoflush is cleaned with its sealing
        audit_event.seq, audit_event.prev_hash = seq, last_hash
        if not keep_time:  # so that time follows the chain's order
            audit_event.time = utcnow()
        audit_event.hash = last_hash = mac(key, event_fields(audit_event), last_hash)
    head.seq, head.last_hash, head.mac = seq, last_hash, head_mac(key, seq, last_hash)
    head.updated_at = utcnow()
    session.add(head)


@event.listens_for(Session, "before_commit")
def _before_commit(session: Session) -> None:
    pending: list[AuditEvent] = session.info.pop(_PENDING, [])
    queued = {id(e) for e in pending}  # by identity: comparing models field by field is quadratic
    strays = [obj for obj in session.new if isinstance(obj, AuditEvent) and id(obj) not in queued]
    events = [e for e in pending + strays if e.seq is None]
    if events:
        link(session, events)


@event.listens_for(Session, "after_soft_rollback")
def _after_rollback(session: Session, _previous: Any) -> None:
    session.info.pop(_PENDING, None)


_SEALING = {"seq", "prev_hash", "hash", "time", "details", *_LIMITS}


@event.listens_for(AuditEvent, "before_update")
def _refuse_update(_mapper: Mapper[Any], _connection: Connection, target: AuditEvent) -> None:
    state = inspect(target)
    changed = {attr.key for attr in state.attrs if attr.history.has_changes()}
    seq = state.attrs.seq.history
    # The only update allowed is the sealing of a row written in this very
    # transaction: its seq goes from NULL to its place in the chain.
    sealing = bool(seq.added) and seq.added[0] is not None and not any(v is not None for v in seq.deleted)
    if changed - _SEALING or not sealing:
        raise PermissionError("audit events are append-only")


@event.listens_for(AuditEvent, "before_delete")
def _refuse_delete(_mapper: Mapper[Any], _connection: Connection, _target: AuditEvent) -> None:
    raise PermissionError("audit events are append-only")
