"""Reading the audit trail (writing happens in every other service, via common.audit).

A person sees the events of the teams they belong to and their own personal
events (sign-ins, tokens); the filters never widen that. Export streams the
same selection as JSON lines, page by page, each page read in a short
read-only transaction. Checking the chain runs only when asked for.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col, select

from envhub.domain.policy import Action
from envhub.domain.principals import Principal
from envhub.errors import PermissionDenied, ValidationFailed
from envhub.models import AuditEvent
from envhub.models.db import begin_read
from envhub.services import cursors
from envhub.services.access import require_scope, teams_of
from envhub.services.audit_chain import ChainReport, CheckMode, StoredCheck, latest_check, run_check
from envhub.services.common import Page, clamp_page, contains
from envhub.services.environments import get_environment

EXPORT_BATCH = 500


@dataclass(frozen=True, slots=True)
class AuditFilter:
    actor: str = ""
    target: str = ""
    action: str = ""
    outcome: str = ""
    since: datetime | None = None
    until: datetime | None = None
    team_id: int | None = None


def environment_audit_trail(
    *, session: Session, actor: Principal, environment_id: int, offset: int = 0, limit: int = 20
) -> Page[AuditEvent]:
    get_environment(session=session, actor=actor, environment_id=environment_id)
    offset, limit = clamp_page(offset, limit)
    where = [AuditEvent.target_type == "environment", AuditEvent.target_id == environment_id]
    total = session.exec(select(func.count()).select_from(AuditEvent).where(*where)).one()
    rows = session.exec(
        select(AuditEvent).where(*where).order_by(col(AuditEvent.id).desc()).offset(offset).limit(limit)
    )
    return Page(items=list(rows), total=int(total), offset=offset, limit=limit)


def recent_events(*, session: Session, actor: Principal, limit: int = 20) -> list[AuditEvent]:
    """Latest events in the actor's teams."""
    return search_events(session=session, actor=actor, limit=limit, counted=False).items


def _conditions(session: Session, actor: Principal, filters: AuditFilter) -> list[ColumnElement[bool]]:
    require_scope(actor, Action.audit_read)
    for name in ("actor", "target", "action", "outcome"):
        if len(getattr(filters, name)) > 200:
            raise ValidationFailed(
                f"the {name} filter is longer than 200 characters", details={"field": name}
            )
    if filters.since and filters.until and filters.since > filters.until:
        raise ValidationFailed("'from' is after 'to'", details={"field": "since"})
    teams = teams_of(session, actor)
    where: list[ColumnElement[bool]] = []
    if teams is not None:
        if filters.team_id is not None and filters.team_id not in teams:
            teams = []  # another team's events: nothing, and no hint that it exists
        elif filters.team_id is not None:
            teams = [filters.team_id]
        mine = (
            col(AuditEvent.actor_id) == actor.user_id
            if actor.user_id is not None and filters.team_id is None
            else None
        )
        visible = col(AuditEvent.team_id).in_(teams or [-1])
        where.append(or_(visible, mine) if mine is not None else visible)
    elif filters.team_id is not None:
        where.append(col(AuditEvent.team_id) == filters.team_id)
    if filters.actor:
        where.append(func.lower(col(AuditEvent.actor)).like(contains(filters.actor), escape="\\"))
    if filters.target:
        where.append(func.lower(col(AuditEvent.target)).like(contains(filters.target), escape="\\"))
    if filters.action:
        where.append(func.lower(col(AuditEvent.action)).like(contains(filters.action), escape="\\"))
    if filters.outcome:
        where.append(col(AuditEvent.outcome) == filters.outcome)
    if filters.since:
        where.append(col(AuditEvent.time) >= filters.since)
    if filters.until:
        where.append(col(AuditEvent.time) <= filters.until)
    return where


def search_events(
    *,
    session: Session,
    actor: Principal,
    filters: AuditFilter | None = None,
    offset: int = 0,
    limit: int = 50,
    cursor: str | None = None,
    counted: bool = True,
) -> Page[AuditEvent]:
    """Events the caller may read, newest first, filtered.

    Paged by ``offset`` (the dashboard) or after ``cursor`` (programs; ``offset``
    is then ignored), as ``environments.list_environments``. ``counted=False``
    skips counting every matching event (``total`` is then 0): a year of trail
    is a hundred thousand rows, and programs walking it by cursor show no total.
    """
    offset, limit = clamp_page(offset, limit)
    if actor.is_agent:
        return Page(items=[], total=0, offset=0, limit=limit)
    where = _conditions(session, actor, filters or AuditFilter())
    total = session.exec(select(func.count()).select_from(AuditEvent).where(*where)).one() if counted else 0
    if cursor:
        where.append(col(AuditEvent.id) < int(cursors.decode(cursor, "audit", (int,))[0]))
        offset = 0
    rows = list(
        session.exec(
            select(AuditEvent)
            .where(*where)
            .order_by(col(AuditEvent.id).desc())
            .offset(offset)
            .limit(limit + 1)
        )
    )
    last = rows[limit - 1] if len(rows) > limit else None
    return Page(
        items=rows[:limit],
        total=int(total),
        offset=offset,
        limit=limit,
        next_cursor=cursors.encode("audit", (last.id or 0,)) if last else None,
    )


def as_record(event: AuditEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "id": event.id,
        "time": event.time.isoformat(),
        "actor": event.actor,
        "actor_id": event.actor_id,
        "principal_type": event.principal_type,
        "token_id": event.token_id,
        "action": event.action,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "target": event.target,
        "team_id": event.team_id,
        "outcome": event.outcome,
        "error_code": event.error_code,
        "source_ip": event.source_ip,
        "user_agent": event.user_agent,
        "details": event.details,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


def export_pages(
    *, session: Session, actor: Principal, filters: AuditFilter | None = None
) -> Iterator[list[dict[str, Any]]]:
    """Every matching event, oldest first, as pages of plain records (for JSON lines).

    Pages are read by id (keyset), each in its own short transaction that has
    ended before the page is handed out: a consumer that stops reading halfway
    (a slow download) holds no transaction and no lock meanwhile. Nothing is
    read until the first page is asked for; that is when authorization happens.
    """
    if actor.is_agent:
        return
    begin_read(session)
    where = _conditions(session, actor, filters or AuditFilter())
    after = 0
    while True:
        begin_read(session)
        rows = list(
            session.exec(
                select(AuditEvent)
                .where(*where, col(AuditEvent.id) > after)
                .order_by(col(AuditEvent.id))
                .limit(EXPORT_BATCH)
            )
        )
        page = [as_record(row) for row in rows]
        for row in rows:  # done with them: out of the session, and out of memory
            session.expunge(row)
        if rows:
            after = rows[-1].id or after
        session.commit()  # end the read before anyone waits on this page
        if not page:
            return
        yield page
        if len(page) < EXPORT_BATCH:
            return


def _may_check(session: Session, actor: Principal) -> None:
    if not actor.is_system and (actor.is_agent or not teams_of(session, actor)):
        raise PermissionDenied("checking the audit chain needs a role in a team")


def check_chain(*, session: Session, actor: Principal, full: bool = False) -> ChainReport:
    """Check the whole chain's integrity, from the last checkpoint (or all of it when ``full``).

    For anyone who may read audit events somewhere; the result is stored and
    audited (services/audit_chain.run_check).
    """
    _may_check(session, actor)
    return run_check(session, actor=actor, mode=CheckMode.full if full else CheckMode.incremental)


def last_check(*, session: Session, actor: Principal) -> StoredCheck | None:
    """The result of the latest check, without running one (what the audit page shows)."""
    _may_check(session, actor)
    return latest_check(session)


def distinct_actions(*, session: Session, actor: Principal) -> list[str]:
    """Actions that occur in what the actor can see (for the filter's choices)."""
    if actor.is_agent:
        return []
    where = _conditions(session, actor, AuditFilter())
    return list(
        session.exec(select(AuditEvent.action).where(*where).distinct().order_by(col(AuditEvent.action)))
    )
