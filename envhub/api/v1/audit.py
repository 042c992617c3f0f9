"""``/api/v1/audit``: the audit trail (by cursor or by offset), its export, and the chain check.

Each route is a thin call into ``services/audit_log.py`` and
``services/listing.py``; what the caller may read is decided there.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from envhub.api.v1.models import NO_NUL, Caller, Cursor, Limit, answers, streamed
from envhub.errors import ValidationFailed
from envhub.models.db import read_session
from envhub.services import audit_log, listing
from envhub.services.audit_chain import StoredCheck
from envhub.services.audit_log import AuditFilter
from envhub.services.units import read_only, unit_of_work

router = APIRouter(prefix="/api/v1", tags=["audit"])


# RFC 3339, as the document's "date-time" format says (datetime.fromisoformat alone takes more).
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
Moment = Annotated[
    str | None, Query(max_length=40, json_schema_extra={"format": "date-time"}, description="RFC 3339 time")
]


def _moment(value: str | None, field: str) -> datetime | None:
    if value is None:
        return None
    try:
        if not _RFC3339.match(value):
            raise ValueError(value)
        return datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValidationFailed(
            f"{field} is not an RFC 3339 time (2026-12-05T09:00:00Z)", details={"field": field}
        ) from exc


def audit_filter(
    actor: Annotated[str, Query(max_length=200, pattern=NO_NUL)] = "",
    target: Annotated[str, Query(max_length=200, pattern=NO_NUL)] = "",
    action: Annotated[str, Query(max_length=200, pattern=NO_NUL)] = "",
    outcome: Annotated[str, Query(max_length=20, pattern=NO_NUL)] = "",
    since: Moment = None,
    until: Moment = None,
    team_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> AuditFilter:
    return AuditFilter(
        actor=actor,
        target=target,
        action=action,
        outcome=outcome,
        since=_moment(since, "since"),
        until=_moment(until, "until"),
        team_id=team_id,
    )


Filters = Annotated[AuditFilter, Depends(audit_filter)]


class AuditRecord(BaseModel):
    seq: int | None
    id: int | None
    time: str
    actor: str
    actor_id: int | None
    principal_type: str
    token_id: int | None
    action: str
    target_type: str
    target_id: int | None
    target: str
    team_id: int | None
    outcome: str
    error_code: str | None
    source_ip: str | None
    user_agent: str | None
    details: dict[str, Any]
    prev_hash: str | None
    hash: str | None


class AuditTrailPage(BaseModel):
    """Newest first. Pass ``next_cursor`` back as ``cursor`` for older events; null at the oldest."""

    items: list[AuditRecord]
    next_cursor: str | None


class AuditOffsetPage(BaseModel):
    total: int
    offset: int
    items: list[AuditRecord]


@router.get(
    "/audit/trail",
    response_model=AuditTrailPage,
    responses=answers(),
    summary="The audit events you may read, newest first, by cursor",
)
def audit_trail(actor: Caller, filters: Filters, cursor: Cursor = None, limit: Limit = 50) -> dict[str, Any]:
    with read_only() as session:
        page = listing.audit_page(session=session, actor=actor, filters=filters, cursor=cursor, limit=limit)
    return {"items": page.items, "next_cursor": page.next_cursor}


@router.get(
    "/audit/events",
    response_model=AuditOffsetPage,
    responses=answers(),
    summary="The audit events you may read, newest first, by offset (the dashboard's pages)",
)
def audit_events(
    actor: Caller,
    filters: Filters,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    with read_only() as session:
        page = audit_log.search_events(
            session=session, actor=actor, filters=filters, offset=offset, limit=limit
        )
        return {
            "total": page.total,
            "offset": page.offset,
            "items": [audit_log.as_record(e) for e in page.items],
        }


# What the export hands the server at a time: small pieces, so that a slow
# reader makes it wait (and hold little memory) rather than buffer whole pages.
EXPORT_CHUNK = 64 * 1024


def _chunks(lines: Iterator[str]) -> Iterator[bytes]:
    buffered: list[bytes] = []
    size = 0
    for line in lines:
        encoded = line.encode()
        buffered.append(encoded)
        size += len(encoded)
        if size >= EXPORT_CHUNK:
            yield b"".join(buffered)
            buffered, size = [], 0
    if buffered:
        yield b"".join(buffered)


@router.get(
    "/audit/export",
    response_class=StreamingResponse,
    responses=streamed("application/x-ndjson", "The events as JSON lines, oldest first."),
    summary="Export the audit events you may read",
)
def audit_export(actor: Caller, filters: Filters) -> StreamingResponse:
    """JSON lines, oldest first; authorization happens before the first byte.

    Each page is read in its own short read-only transaction (services/
    audit_log.export_pages), so a client that downloads slowly, or stops,
    holds no database lock while the rest waits to be sent.
    """
    session_cm = read_session()
    session = session_cm.__enter__()
    try:
        pages = audit_log.export_pages(session=session, actor=actor, filters=filters)
        first = next(pages, None)
    except BaseException:
        session_cm.__exit__(None, None, None)
        raise

    def lines() -> Iterator[bytes]:
        try:
            page = first
            while page is not None:
                yield from _chunks(json.dumps(record, ensure_ascii=False) + "\n" for record in page)
                page = next(pages, None)
        finally:
            session_cm.__exit__(None, None, None)

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return StreamingResponse(
        lines(),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="envhub-audit-{stamp}.jsonl"'},
    )


class LastCheck(BaseModel):
    checked: bool
    summary: str
    ok: bool | None = None
    sealed: bool | None = None
    mode: str | None = None
    events: int | None = None
    from_seq: int | None = None
    to_seq: int | None = None
    checked_by: str | None = None
    finished_at: str | None = None
    problems: list[Any] = []


def check_view(stored: StoredCheck | None) -> dict[str, Any]:
    if stored is None:
        return {"checked": False, "summary": "the audit chain has not been checked yet"}
    row = stored.row
    return {
        "checked": True,
        "ok": row.ok and stored.sealed,
        "sealed": stored.sealed,
        "mode": row.mode,
        "events": row.checked,
        "from_seq": row.from_seq,
        "to_seq": row.to_seq,
        "checked_by": row.checked_by,
        "finished_at": row.finished_at.isoformat(),
        "summary": stored.summary(),
        "problems": row.problems if stored.sealed else [],
    }


@router.get(
    "/audit/verify",
    response_model=LastCheck,
    response_model_exclude_unset=True,
    responses=answers(),
    summary="The latest check of the audit chain (reading it runs nothing)",
)
def audit_last_check(actor: Caller) -> dict[str, Any]:
    with read_session() as session:
        return check_view(audit_log.last_check(session=session, actor=actor))


class ChainProblem(BaseModel):
    kind: str
    seq: int | None
    message: str


class CheckReport(BaseModel):
    ok: bool
    mode: str
    checked: int
    from_seq: int | None
    to_seq: int | None
    summary: str
    problems: list[ChainProblem]


@router.post(
    "/audit/verify",
    response_model=CheckReport,
    responses=answers(),
    summary="Check the audit chain now (from the last checkpoint, or every event with full=true)",
)
def audit_verify(actor: Caller, full: Annotated[bool, Query()] = False) -> dict[str, Any]:
    with unit_of_work() as session:
        report = audit_log.check_chain(session=session, actor=actor, full=full)
    return {
        "ok": report.ok,
        "mode": report.mode.value,
        "checked": report.checked,
        "from_seq": report.from_seq,
        "to_seq": report.to_seq,
        "summary": report.summary(),
        "problems": [{"kind": p.kind, "seq": p.seq, "message": p.message} for p in report.problems],
    }
