"""``/api/v1``: who am I, personal access tokens, the audit trail.

Each route is a thin call into a use case with the caller from ``api/auth.py``;
authorization and auditing happen in the use case.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from envhub.api.auth import require_principal
from envhub.domain.principals import Principal
from envhub.errors import ValidationFailed
from envhub.models import ApiToken
from envhub.models.db import read_session, session_scope
from envhub.services import audit_log, credentials, tokens
from envhub.services.audit_chain import StoredCheck
from envhub.services.audit_log import AuditFilter
from envhub.services.sessions import csrf_token

router = APIRouter(prefix="/api/v1")
Caller = Annotated[Principal, Depends(require_principal)]
# Database ids are 32-bit: a larger number is a bad request, not a database error.
Id = Annotated[int, Path(ge=1, le=2**31 - 1)]


class TokenIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    scopes: list[str] = Field(min_length=1, max_length=10)
    expires_in_days: int = Field(ge=1, le=3650)


def token_view(row: ApiToken) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "kind": row.kind,
        "hint": row.hint,
        "scopes": row.scopes,
        "environment_id": row.environment_id,
        "created_at": row.created_at.isoformat(),
        "expires_at": row.expires_at.isoformat(),
        "last_used_at": row.last_used_at.isoformat() if row.last_used_at else None,
        "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
    }


@router.get("/me")
def me(request: Request, actor: Caller) -> dict[str, Any]:
    caller = request.state.caller
    with session_scope() as session:
        groups = credentials.kubernetes_groups(session=session, actor=actor) if actor.is_person else []
    return {
        "name": actor.name,
        "type": actor.type.value,
        "user_id": actor.user_id,
        "scopes": sorted(s.value for s in actor.scopes) if actor.scopes is not None else None,
        "environment_id": actor.environment_id,
        # The token this request came with (the CLI revokes it on logout); None for a session.
        "token_id": actor.token_id,
        "kubernetes_groups": groups,
        # For cookie-authenticated scripts on envhub's own pages.
        "csrf_token": csrf_token(caller.session_hash) if caller.session_hash else None,
    }


@router.get("/tokens")
def list_tokens(actor: Caller) -> list[dict[str, Any]]:
    with session_scope() as session:
        return [token_view(row) for row in tokens.list_tokens(session=session, actor=actor)]


@router.post("/tokens", status_code=201)
def create_token(body: TokenIn, actor: Caller) -> dict[str, Any]:
    with session_scope() as session:
        new = tokens.create_personal_token(
            session=session,
            actor=actor,
            name=body.name,
            scopes=body.scopes,
            expires_in_days=body.expires_in_days,
            via="api",
        )
        return {**token_view(new.row), "token": new.token}


@router.delete("/tokens/{token_id}")
def revoke_token(token_id: Id, actor: Caller) -> dict[str, Any]:
    with session_scope() as session:
        return token_view(tokens.revoke_token(session=session, actor=actor, token_id=token_id))


def _when(value: str | None, field: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValidationFailed(f"{field} is not an ISO 8601 time", details={"field": field}) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def audit_filter(
    actor: Annotated[str, Query(max_length=200)] = "",
    target: Annotated[str, Query(max_length=200)] = "",
    action: Annotated[str, Query(max_length=200)] = "",
    outcome: Annotated[str, Query(max_length=20)] = "",
    since: Annotated[str | None, Query(max_length=40)] = None,
    until: Annotated[str | None, Query(max_length=40)] = None,
    team_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> AuditFilter:
    return AuditFilter(
        actor=actor,
        target=target,
        action=action,
        outcome=outcome,
        since=_when(since, "since"),
        until=_when(until, "until"),
        team_id=team_id,
    )


Filters = Annotated[AuditFilter, Depends(audit_filter)]


@router.get("/audit/events")
def audit_events(
    actor: Caller,
    filters: Filters,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    with read_session() as session:
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


@router.get("/audit/export")
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


@router.get("/audit/verify")
def audit_last_check(actor: Caller) -> dict[str, Any]:
    """The latest check's result; reading it runs nothing."""
    with read_session() as session:
        return check_view(audit_log.last_check(session=session, actor=actor))


@router.post("/audit/verify")
def audit_verify(actor: Caller, full: Annotated[bool, Query()] = False) -> dict[str, Any]:
    """Check the chain now: from the last checkpoint, or every event with ``full=true``."""
    with session_scope() as session:
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
