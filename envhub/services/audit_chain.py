"""Checking the audit chain, and sealing rows written before it existed.

:func:`verify_chain` walks every event in ``seq`` order and recomputes its
MAC; it reports each event that was edited, each gap where events were
deleted, events that sit in the wrong place, and a head that does not match
the last event (events cut off the end). ``envhub audit verify`` and the
audit page both call it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlmodel import Session, col, select

from envhub.domain.audit_chain import GENESIS, head_mac, mac
from envhub.models import AuditChainHead, AuditEvent
from envhub.models.audit_chain import HEAD_ID, chain_key, event_fields, link

log = logging.getLogger(__name__)

_BATCH = 1000


@dataclass(frozen=True, slots=True)
class ChainProblem:
    kind: str  # edited | deleted | reordered | unsealed | head
    message: str
    seq: int | None = None
    event_id: int | None = None


@dataclass(slots=True)
class ChainReport:
    checked: int = 0
    problems: list[ChainProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if self.ok:
            return f"audit chain intact: {self.checked} event(s) verified"
        return f"audit chain BROKEN: {len(self.problems)} problem(s) in {self.checked} event(s)"


def verify_chain(session: Session, *, key: bytes | None = None, limit_problems: int = 100) -> ChainReport:
    key = key or chain_key()
    report = ChainReport()
    unsealed = session.exec(
        select(AuditEvent.id).where(col(AuditEvent.seq).is_(None)).order_by(col(AuditEvent.id))
    )
    for event_id in unsealed:
        report.problems.append(
            ChainProblem("unsealed", f"event id {event_id} is not part of the chain", event_id=event_id)
        )
    seen: dict[str, int] = {}  # MAC -> seq, to tell a moved event from an edited one
    expected_seq, expected_prev = 1, GENESIS
    last_seq, last_hash = 0, GENESIS
    after = 0
    while True:
        rows = list(
            session.exec(
                select(AuditEvent)
                .where(col(AuditEvent.seq) > after)
                .order_by(col(AuditEvent.seq))
                .limit(_BATCH)
            )
        )
        if not rows:
            break
        for row in rows:
            assert row.seq is not None
            report.checked += 1
            _check_row(report, row, key, expected_seq, expected_prev, seen)
            seen[row.hash or ""] = row.seq
            expected_seq, expected_prev = row.seq + 1, row.hash or ""
            last_seq, last_hash = row.seq, row.hash or ""
        after = rows[-1].seq or after
        session.expunge_all()  # stream: a long chain must not pile up in memory
    _check_head(report, session, key, last_seq, last_hash)
    del report.problems[limit_problems:]
    return report


def _check_row(
    report: ChainReport,
    row: AuditEvent,
    key: bytes,
    expected_seq: int,
    expected_prev: str,
    seen: dict[str, int],
) -> None:
    where = {"seq": row.seq, "event_id": row.id}
    if row.seq is not None and row.seq > expected_seq:
        missing = f"#{expected_seq}" + (f"–#{row.seq - 1}" if row.seq - 1 > expected_seq else "")
        report.problems.append(
            ChainProblem("deleted", f"event(s) {missing} are missing before #{row.seq}", **where)
        )
    if row.prev_hash != expected_prev:
        if row.prev_hash in seen:
            report.problems.append(
                ChainProblem(
                    "reordered",
                    f"event #{row.seq} belongs after #{seen[row.prev_hash or '']}, not here",
                    **where,
                )
            )
        elif row.seq == expected_seq:
            report.problems.append(
                ChainProblem("edited", f"the event before #{row.seq} was changed or replaced", **where)
            )
    if row.hash is None or mac(key, event_fields(row), row.prev_hash or "") != row.hash:
        report.problems.append(
            ChainProblem("edited", f"event #{row.seq} was changed after it was written", **where)
        )


def _check_head(report: ChainReport, session: Session, key: bytes, last_seq: int, last_hash: str) -> None:
    head = session.get(AuditChainHead, HEAD_ID)
    if head is None:
        if last_seq:
            report.problems.append(ChainProblem("head", "the chain's head record is missing"))
        return
    if head.mac != head_mac(key, head.seq, head.last_hash):
        report.problems.append(ChainProblem("head", "the chain's head record was changed"))
    elif head.seq > last_seq:
        report.problems.append(
            ChainProblem(
                "deleted", f"event(s) #{last_seq + 1}–#{head.seq} at the end of the chain are missing"
            )
        )
    elif head.seq < last_seq or head.last_hash != last_hash:
        report.problems.append(
            ChainProblem("head", f"events after #{head.seq} were added without going through envhub")
        )


def seal_legacy_rows(session: Session) -> int:
    """Chain audit rows written before the chain existed (in id order). Idempotent."""
    rows = list(
        session.exec(select(AuditEvent).where(col(AuditEvent.seq).is_(None)).order_by(col(AuditEvent.id)))
    )
    if rows:
        link(session, rows, keep_time=True)
        session.commit()
        log.info("sealed %d audit event(s) written before the chain", len(rows))
    return len(rows)
