"""Every environment a principal can see, across projects and teams, as one list.

The dashboard's Environments page, ``GET /api/v1/environments``, ``envhub env
ls`` and MCP's list tool page through the same query: readable rows only
(``access.readable_environments``, a SQL condition, so the database filters,
counts and pages), newest first, with a keyset cursor on ``(created_at, id)``
that stays correct while environments are created between two pages (an
offset would skip or repeat rows then). Filters arrive from URLs and command
lines as strings; :func:`filters_from_query` is the one place that reads them.
The view model built from this is ``environment_views.visible_environments``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, and_, exists, func, or_
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from envhub.domain.phases import Phase
from envhub.domain.principals import Principal
from envhub.domain.specs import EnvironmentKind, Trigger
from envhub.errors import ValidationFailed
from envhub.models import Environment, Membership, Project, Team, User
from envhub.services import cursors
from envhub.services.access import readable_environments
from envhub.services.common import MAX_PAGE_SIZE, contains

E = TypeVar("E", bound=StrEnum)
SEARCH_MAX = 200


@dataclass(frozen=True, slots=True)
class EnvironmentFilters:
    """What to narrow the list to; ``None`` or "" means "any"."""

    project: int | None = None
    team: int | None = None
    phase: Phase | None = None
    kind: EnvironmentKind | None = None
    trigger: Trigger | None = None
    creator: str | None = None  # a username
    search: str = ""  # part of an environment's, project's or team's name; "project/env" narrows both
    include_deleted: bool = False  # deleted environments are hidden unless asked for (or phase=deleted)

    def to_query(self) -> dict[str, str]:
        """The filters as URL query parameters (only those set), read back by :func:`filters_from_query`."""
        values: dict[str, Any] = {
            "project": self.project,
            "team": self.team,
            "phase": self.phase,
            "kind": self.kind,
            "trigger": self.trigger,
            "creator": self.creator,
            "q": self.search,
            "deleted": "1" if self.include_deleted else None,
        }
        return {key: str(value) for key, value in values.items() if value not in (None, "")}

    @property
    def shows_deleted(self) -> bool:
        return self.include_deleted or self.phase is Phase.deleted


@dataclass(frozen=True, slots=True)
class ListedEnvironment:
    environment: Environment
    project: str
    team: str
    creator: str | None


@dataclass(frozen=True, slots=True)
class Options:
    """The values the filters can take, among what the principal can see."""

    projects: list[tuple[int, str, str]]  # (id, project name, team name)
    teams: list[tuple[int, str]]
    creators: list[str]
    # Projects whose change notifications can alter the list: those listed and,
    # for a person, every project of their teams (a first environment appears).
    watched_projects: list[int]


@dataclass(frozen=True, slots=True)
class Listing:
    items: list[ListedEnvironment]
    next_cursor: str  # "" on the last page
    total: int  # matching the filters, across all pages
    visible_total: int  # visible at all, filters aside (tells "none yet" from "none match")
    phase_counts: dict[str, int]  # per phase, with every filter but the phase applied
    options: Options
    filters: EnvironmentFilters = field(default_factory=EnvironmentFilters)


# -- reading filters and cursors ----------------------------------------------


def _enum(enum: type[E], value: str, name: str) -> E | None:
    if not value:
        return None
    try:
        return enum(value)
    except ValueError as exc:
        raise ValidationFailed(
            f"{name} must be one of {', '.join(member.value for member in enum)}", details={"field": name}
        ) from exc


def _id(value: str, name: str) -> int | None:
    if not value:
        return None
    if not value.isdigit() or len(value) > 18:
        raise ValidationFailed(f"{name} must be an id (a positive number)", details={"field": name})
    return int(value)


def filters_from_query(query: Mapping[str, str]) -> EnvironmentFilters:
    """Filters from URL query parameters or CLI options (``project``, ``team``, ``phase``, ``kind``,
    ``trigger``, ``creator``, ``q``, ``deleted``); unknown keys are ignored, bad values refused."""

    def text(key: str) -> str:
        return str(query.get(key) or "").strip()

    search = text("q")
    if len(search) > SEARCH_MAX:
        raise ValidationFailed(f"q must be at most {SEARCH_MAX} characters", details={"field": "q"})
    return EnvironmentFilters(
        project=_id(text("project"), "project"),
        team=_id(text("team"), "team"),
        phase=_enum(Phase, text("phase"), "phase"),
        kind=_enum(EnvironmentKind, text("kind"), "kind"),
        trigger=_enum(Trigger, text("trigger"), "trigger"),
        creator=text("creator")[:100] or None,
        search=search,
        include_deleted=text("deleted").lower() in ("1", "true", "yes"),
    )


def _after(environment: Environment) -> str:
    """The cursor for "after this environment" in the newest-first order (``services/cursors.py``)."""
    return cursors.encode("visible", (environment.created_at.isoformat(), environment.id or 0))


# -- the query -----------------------------------------------------------------


def _search(text: str) -> ColumnElement[bool]:
    names = (col(Environment.name), col(Project.name), col(Team.name))
    if "/" in text:  # "shop/pr-12": a project (or team) and an environment of it
        scope, _, name = text.rpartition("/")
        return and_(
            col(Environment.name).ilike(contains(name), escape="\\"),
            or_(*(column.ilike(contains(scope), escape="\\") for column in names[1:])),
        )
    return or_(*(column.ilike(contains(text), escape="\\") for column in names))


def _conditions(filters: EnvironmentFilters, *, phase: bool = True) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if not filters.shows_deleted:
        where.append(col(Environment.phase) != Phase.deleted)
    if filters.project is not None:
        where.append(col(Environment.project_id) == filters.project)
    if filters.team is not None:
        where.append(col(Project.team_id) == filters.team)
    if phase and filters.phase is not None:
        where.append(col(Environment.phase) == filters.phase)
    if filters.kind is not None:
        where.append(col(Environment.kind) == filters.kind)
    if filters.trigger is not None:
        where.append(col(Environment.trigger) == filters.trigger)
    if filters.creator:
        where.append(col(User.username) == filters.creator)
    if filters.search:
        where.append(_search(filters.search))
    return where


def _joined(statement: SelectOfScalar[Any] | Any) -> Any:
    return (
        statement.join(Project, col(Project.id) == Environment.project_id)
        .join(Team, col(Team.id) == Project.team_id)
        .outerjoin(User, col(User.id) == Environment.created_by_id)
    )


def _count(session: Session, where: list[ColumnElement[bool]]) -> int:
    return int(session.exec(_joined(select(func.count()).select_from(Environment)).where(*where)).one())


def _options(
    session: Session, actor: Principal, readable: ColumnElement[bool], filters: EnvironmentFilters
) -> Options:
    """Projects and creators with at least one environment in scope, and their teams.

    Asked of the (few) projects and people, each with an ``EXISTS`` probe on an
    index, rather than as a ``DISTINCT`` over every visible environment.
    """
    scope = [readable, *_conditions(EnvironmentFilters(include_deleted=filters.shows_deleted))]

    def having(link: ColumnElement[bool]) -> Any:
        return exists(select(Environment.id).where(link, *scope))

    projects = session.exec(
        select(Project.id, Project.name, Team.id, Team.name)
        .join(Team, col(Team.id) == Project.team_id)
        .where(having(col(Environment.project_id) == Project.id))
        .order_by(col(Project.name), col(Team.name))
    ).all()
    creators = session.exec(
        select(User.username)
        .where(having(col(Environment.created_by_id) == User.id))
        .order_by(col(User.username))
    ).all()
    teams = sorted({(int(tid), str(team)) for _pid, _name, tid, team in projects}, key=lambda t: (t[1], t[0]))
    watched = {int(pid) for pid, _name, _tid, _team in projects}
    if actor.user_id is not None and not actor.is_agent:
        my_teams = select(Membership.team_id).where(Membership.user_id == actor.user_id)
        team_projects = session.exec(select(Project.id).where(col(Project.team_id).in_(my_teams)))
        watched |= {pid for pid in team_projects if pid is not None}
    return Options(
        projects=[(int(pid), str(name), str(team)) for pid, name, _tid, team in projects],
        teams=teams,
        creators=[str(name) for name in creators],
        watched_projects=sorted(watched),
    )


def list_visible_environments(
    *,
    session: Session,
    actor: Principal,
    filters: EnvironmentFilters | None = None,
    cursor: str | None = None,
    limit: int = 50,
    facets: bool = True,
) -> Listing:
    """A page of the environments ``actor`` can read, newest first, and what the filters can take.

    ``facets=False`` (programs: REST, MCP) leaves out what only the dashboard
    shows: ``phase_counts`` and ``options`` come back empty and
    ``visible_total`` equals ``total``.
    """
    filters = filters or EnvironmentFilters()
    limit = max(1, min(limit, MAX_PAGE_SIZE))
    readable = readable_environments(actor)
    where = [readable, *_conditions(filters)]
    statement = _joined(select(Environment, Project.name, Team.name, User.username)).where(*where)
    if cursor:
        stamp, ident = cursors.decode(cursor, "visible", (datetime, int))
        moment = datetime.fromisoformat(str(stamp))
        statement = statement.where(
            or_(
                col(Environment.created_at) < moment,
                and_(col(Environment.created_at) == moment, col(Environment.id) < ident),
            )
        )
    rows = session.exec(
        statement.order_by(col(Environment.created_at).desc(), col(Environment.id).desc()).limit(limit + 1)
    ).all()
    items = [ListedEnvironment(env, str(project), str(team), creator) for env, project, team, creator in rows]
    more = len(items) > limit
    items = items[:limit]
    next_cursor = _after(items[-1].environment) if more else ""
    if not facets:
        total = _count(session, where)
        return Listing(items, next_cursor, total, total, {}, Options([], [], [], []), filters)
    # One grouped count gives the per-phase counts, the total (their sum, or the
    # chosen phase's) and, when nothing narrows the list, the visible total.
    phases = session.exec(
        _joined(select(Environment.phase, func.count()).select_from(Environment))
        .where(readable, *_conditions(filters, phase=False))
        .group_by(col(Environment.phase))
    ).all()
    phase_counts = {Phase(phase).value: int(count) for phase, count in phases}
    if filters.phase is not None:
        total = phase_counts.get(filters.phase.value, 0)
    else:
        total = sum(phase_counts.values())
    unfiltered = EnvironmentFilters()
    narrowed = replace(filters, include_deleted=False) != unfiltered or (
        filters.include_deleted and Phase.deleted.value in phase_counts
    )
    return Listing(
        items=items,
        next_cursor=next_cursor,
        total=total,
        visible_total=_count(session, [readable, *_conditions(unfiltered)]) if narrowed else total,
        phase_counts=phase_counts,
        options=_options(session, actor, readable, filters),
        filters=filters,
    )
