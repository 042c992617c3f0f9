"""Checking the audit chain, from a stored checkpoint or from the start.

A check walks events in ``seq`` order and recomputes each MAC; it reports each
event that was edited, each gap where events were deleted, events that sit in
the wrong place, and a head that does not match the last event (events cut
off the end, or added without envhub's key). It reads in batches, each in its
own short read-only transaction, so a long chain never holds a lock.

Every check stores its result (``AuditChainCheck``) sealed with a MAC under a
key derived from envhub's secret, and leaves an ``audit.verify`` event in the
chain. An intact result is a checkpoint: an *incremental* check re-verifies
the checkpoint's own event (still there, same MAC) and then only the events
after it. What the checkpoint holds against someone who can write to the
database but does not hold the key:

* Events after the checkpoint edited, deleted, reordered, forged or cut off:
  found, exactly as by a full check.
* A forged or edited check result (to make a check skip tampered events)
  does not verify: it is reported, and the check starts from an older one.
* A failed check sticks: later incremental checks start no later than where
  it started, so the result stays red until the chain is repaired.
* A genuine result copied into a newer row does not verify either (the MAC
  covers the row's id).

What it does not hold against:

* An event *before* the checkpoint edited after the checkpoint was taken is
  not looked at by an incremental check. A full check finds it; ``envhub
  audit verify`` runs one by default.
* Stored results can be deleted (not forged): the page then shows an older
  result, with its date, and an incremental check may again start from a
  checkpoint that lies after an edit a deleted failed check had found. A
  full check still finds the edit, and each check also left an
  ``audit.verify`` event in the chain (outcome ``failure`` when broken) that
  cannot be removed without a full check noticing.
"""

from __future__ import annotations

import hmac
import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import Row, Select, func
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select as sa_select
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from envhub.domain.audit_chain import CHECK_FIELDS, FIELDS, GENESIS, check_mac, head_mac, mac
from envhub.domain.principals import Principal
from envhub.errors import Conflict
from envhub.models import AuditChainCheck, AuditChainHead, AuditEvent
from envhub.models.audit_chain import HEAD_ID, chain_key, event_fields, link
from envhub.models.base import utcnow
from envhub.models.db import begin_read
from envhub.services.common import audit

log = logging.getLogger(__name__)
T = TypeVar("T")

_BATCH = 1000
_EVENTS = sa_inspect(AuditEvent).local_table  # read as plain rows by a check
_FIELD_AT = tuple((name, list(_EVENTS.columns.keys()).index(name)) for name in FIELDS)
_STORED_PROBLEMS = 20
# One check at a time per process: a full check reads every event, and a
# crowd of them must not take every worker thread.
_running = threading.Lock()


class CheckMode(StrEnum):
    full = "full"  # every event from the first
    incremental = "incremental"  # the checkpoint's event and what came after it


@dataclass(frozen=True, slots=True)
class ChainProblem:
    kind: str  # edited | deleted | reordered | unsealed | head | checkpoint
    message: str
    seq: int | None = None
    event_id: int | None = None


@dataclass(frozen=True, slots=True)
class Checkpoint:
    seq: int  # the last event an intact check verified (0: none, the beginning)
    hash: str  # that event's MAC
    check_id: int | None = None


START = Checkpoint(seq=0, hash=GENESIS)


@dataclass(slots=True)
class ChainReport:
    checked: int = 0
    problems: list[ChainProblem] = field(default_factory=list)
    mode: CheckMode = CheckMode.full
    from_seq: int = 0  # the checkpoint it started after
    to_seq: int = 0  # the last event it verified
    last_hash: str = GENESIS

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if not self.ok:
            return f"audit chain BROKEN: {len(self.problems)} problem(s) in {self.checked} event(s)"
        if self.from_seq:
            return (
                f"audit chain intact: {self.checked} event(s) after the checkpoint at "
                f"#{self.from_seq} verified"
            )
        return f"audit chain intact: {self.checked} event(s) verified"


@dataclass(frozen=True, slots=True)
class StoredCheck:
    """A stored check result, as shown on the audit page."""

    row: AuditChainCheck
    sealed: bool  # its MAC verifies: nobody changed it in the database

    def summary(self) -> str:
        if not self.sealed:
            return "the stored result of the last check was changed: run a full check"
        return ChainReport(
            checked=self.row.checked,
            problems=[ChainProblem(p["kind"], p["message"], p.get("seq")) for p in self.row.problems],
            mode=CheckMode(self.row.mode),
            from_seq=self.row.from_seq,
        ).summary()


def _check_fields(check: AuditChainCheck) -> dict[str, Any]:
    return {name: getattr(check, name) for name in CHECK_FIELDS}


def is_sealed(check: AuditChainCheck, key: bytes) -> bool:
    return hmac.compare_digest(check.mac, check_mac(key, _check_fields(check)))


def _read_batch(session: Session, query: SelectOfScalar[T]) -> list[T]:
    """Rows of ``query`` read in a transaction of their own, ended before they are used."""
    begin_read(session)
    rows = list(session.exec(query))
    for row in rows:  # detached, they keep their values past the commit, and leave memory after use
        session.expunge(row)
    session.commit()
    return rows


def _read_rows(session: Session, query: Select[Any]) -> list[Row[Any]]:
    """Plain rows of ``query`` (no ORM objects: a full check reads every event), in a transaction of
    their own."""
    begin_read(session)
    rows = list(session.execute(query))
    session.commit()
    return rows


# -- walking the chain -------------------------------------------------------------


def verify_chain(
    session: Session,
    *,
    key: bytes | None = None,
    since: Checkpoint = START,
    limit_problems: int = 100,
) -> ChainReport:
    """Verify the events after ``since`` (all of them by default); stores nothing.

    Ends the session's transaction after each batch (the caller must not
    have changes pending).
    """
    key = key or chain_key()
    report = ChainReport(
        mode=CheckMode.full if since.seq == 0 else CheckMode.incremental,
        from_seq=since.seq,
        to_seq=since.seq,
        last_hash=since.hash,
    )
    begin_read(session)
    head, end = _snapshot(session)
    unsealed = session.exec(
        select(AuditEvent.id).where(col(AuditEvent.seq).is_(None)).order_by(col(AuditEvent.id)).limit(1000)
    )
    for event_id in unsealed:
        report.problems.append(
            ChainProblem("unsealed", f"event id {event_id} is not part of the chain", event_id=event_id)
        )
    if since.seq:
        _check_anchor(report, session, key, since)
    session.commit()
    seen: dict[str, int] = {since.hash: since.seq} if since.seq else {}  # MAC -> seq: moved or edited?
    expected_seq, expected_prev = since.seq + 1, since.hash
    after = since.seq
    while after < end:
        rows = _read_rows(
            session,
            sa_select(_EVENTS)
            .where(col(AuditEvent.seq) > after, col(AuditEvent.seq) <= end)
            .order_by(col(AuditEvent.seq))
            .limit(_BATCH),
        )
        if not rows:
            break
        for row in rows:
            assert row.seq is not None
            report.checked += 1
            _check_row(report, row, key, expected_seq, expected_prev, seen)
            seen[row.hash or ""] = row.seq
            expected_seq, expected_prev = row.seq + 1, row.hash or ""
            report.to_seq, report.last_hash = row.seq, row.hash or ""
        after = rows[-1].seq or after
    _check_head(report, key, head, end)
    del report.problems[limit_problems:]
    return report


@dataclass(frozen=True, slots=True)
class _Head:
    seq: int
    last_hash: str
    mac: str


def _snapshot(session: Session) -> tuple[_Head | None, int]:
    """The head and the last event's place, read together (one statement, one snapshot).

    Events appended while the check runs come after ``end`` and are left to
    the next check; legitimate appends move the head in the same transaction.
    """
    last = select(func.coalesce(func.max(AuditEvent.seq), 0)).scalar_subquery()
    found = session.exec(
        select(AuditChainHead.seq, AuditChainHead.last_hash, AuditChainHead.mac, last).where(
            col(AuditChainHead.id) == HEAD_ID
        )
    ).first()
    if found is not None:
        return _Head(int(found[0]), str(found[1]), str(found[2])), int(found[3])
    return None, int(session.exec(select(func.coalesce(func.max(AuditEvent.seq), 0))).one() or 0)


def _check_anchor(report: ChainReport, session: Session, key: bytes, since: Checkpoint) -> None:
    """The checkpoint's own event must still be there, unchanged."""
    anchor = session.exec(select(AuditEvent).where(col(AuditEvent.seq) == since.seq)).first()
    where = {"seq": since.seq, "event_id": anchor.id if anchor else None}
    if anchor is None:
        report.problems.append(
            ChainProblem("deleted", f"event #{since.seq}, the last one checked before, is missing", **where)
        )
    elif anchor.hash != since.hash or mac(key, event_fields(anchor), anchor.prev_hash or "") != anchor.hash:
        report.problems.append(
            ChainProblem(
                "edited", f"event #{since.seq} was changed after an earlier check verified it", **where
            )
        )


def _check_row(
    report: ChainReport,
    row: Row[Any],
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
    fields = {name: row[at] for name, at in _FIELD_AT}
    if row.hash is None or mac(key, fields, row.prev_hash or "") != row.hash:
        report.problems.append(
            ChainProblem("edited", f"event #{row.seq} was changed after it was written", **where)
        )


def _check_head(report: ChainReport, key: bytes, head: _Head | None, end: int) -> None:
    last_seq, last_hash = report.to_seq, report.last_hash
    if head is None:
        if end:
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


# -- checkpoints and stored results ------------------------------------------------


def _forged(check: AuditChainCheck) -> ChainProblem:
    return ChainProblem("checkpoint", f"the stored result of check {check.id} was changed or forged")


def find_checkpoint(session: Session, key: bytes) -> tuple[Checkpoint, list[ChainProblem]]:
    """Where an incremental check starts: the newest intact result that no
    failed check since then started before. Forged or edited results are
    skipped, and returned as problems."""
    problems: list[ChainProblem] = []
    limit: int | None = None
    before: int | None = None
    while True:
        query = select(AuditChainCheck).order_by(col(AuditChainCheck.id).desc()).limit(100)
        if before is not None:
            query = query.where(col(AuditChainCheck.id) < before)
        checks: list[AuditChainCheck] = _read_batch(session, query)
        if not checks:
            return START, problems
        for check in checks:
            if not is_sealed(check, key):
                problems.append(_forged(check))
            elif not check.ok:
                limit = check.from_seq if limit is None else min(limit, check.from_seq)
                if limit == 0:
                    return START, problems
            elif limit is None or check.to_seq <= limit:
                return Checkpoint(seq=check.to_seq, hash=check.last_hash, check_id=check.id), problems
        before = checks[-1].id


def _forged_results(session: Session, key: bytes) -> list[ChainProblem]:
    """A full check also verifies every stored result (evidence of tampering)."""
    problems: list[ChainProblem] = []
    after = 0
    while True:
        checks: list[AuditChainCheck] = _read_batch(
            session,
            select(AuditChainCheck)
            .where(col(AuditChainCheck.id) > after)
            .order_by(col(AuditChainCheck.id))
            .limit(_BATCH),
        )
        if not checks:
            return problems
        problems += [_forged(check) for check in checks if not is_sealed(check, key)]
        after = checks[-1].id or after


def run_check(session: Session, *, actor: Principal, mode: CheckMode) -> ChainReport:
    """Check the chain (all of it, or from the checkpoint), store the result, audit it.

    One check runs at a time in a process; another one asked for meanwhile
    is refused with ``conflict`` rather than queued.
    """
    if not _running.acquire(blocking=False):
        raise Conflict(
            "a check of the audit chain is already running",
            hint="Wait for it to finish; its result then shows on the audit page.",
        )
    try:
        key = chain_key()
        started = utcnow()
        if mode is CheckMode.incremental:
            since, found = find_checkpoint(session, key)
        else:
            since, found = START, _forged_results(session, key)
        report = verify_chain(session, key=key, since=since)
        report.mode = mode
        report.problems[:0] = found
        _store(session, actor, report, started, key)
        return report
    finally:
        _running.release()


def _store(session: Session, actor: Principal, report: ChainReport, started: datetime, key: bytes) -> None:
    check = AuditChainCheck(
        mode=report.mode.value,
        from_seq=report.from_seq,
        to_seq=report.to_seq,
        last_hash=report.last_hash,
        checked=report.checked,
        ok=report.ok,
        problems=[
            {"kind": p.kind, "seq": p.seq, "message": p.message} for p in report.problems[:_STORED_PROBLEMS]
        ],
        checked_by=actor.name[:200],
        started_at=started,
        finished_at=utcnow(),
        mac="",
    )
    session.add(check)
    session.flush()  # its id is part of what the MAC covers
    check.mac = check_mac(key, _check_fields(check))
    session.commit()
    try:
        audit(
            session,
            actor,
            "audit.verify",
            target_type="audit_chain",
            target_id=check.id,
            target=report.mode.value,
            team_id=None,
            outcome="success" if report.ok else "failure",
            details={
                "ok": report.ok,
                "checked": report.checked,
                "from_seq": report.from_seq,
                "to_seq": report.to_seq,
                "problems": len(report.problems),
            },
        )
        session.commit()
    except SQLAlchemyError:
        # A chain broken at its end (a forged row in the head's next place)
        # refuses new events; the stored result above still says so.
        session.rollback()
        log.exception("the audit chain check could not record its own event")


def latest_check(session: Session) -> StoredCheck | None:
    check = session.exec(select(AuditChainCheck).order_by(col(AuditChainCheck.id).desc()).limit(1)).first()
    return StoredCheck(row=check, sealed=is_sealed(check, chain_key())) if check else None


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
