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
from sqlalchemy.orm import aliased
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


def _matches(column: Any, text: str) -> ColumnElement[bool]:
    return func.lower(column).like(contains(text), escape="\\")


def _in_projects_named(text: str) -> ColumnElement[bool]:
    """In a project whose own or whose team's name contains ``text``.

    Asked of the (few) projects once, not of each environment's joined row: a
    search reads every visible environment, and matching three names on each
    was most of its time at 10,000 environments.
    """
    project, team = aliased(Project), aliased(Team)
    named = (
        select(project.id)
        .join(team, col(team.id) == project.team_id)
        .where(or_(_matches(project.name, text), _matches(team.name, text)))
    )
    return col(Environment.project_id).in_(named)


def _search(text: str) -> ColumnElement[bool]:
    if "/" in text:  # "shop/pr-12": a project (or team) and an environment of it
        scope, _, name = text.rpartition("/")
        return and_(_matches(Environment.name, name), _in_projects_named(scope))
    return or_(_matches(Environment.name, text), _in_projects_named(text))


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


def _counting(statement: Any, filters: EnvironmentFilters) -> Any:
    """``statement`` over environments, joined only to what ``filters`` look at.

    Every environment has exactly one project and team, so counts need no join
    unless a filter reads them: a count reads every visible environment.
    """
    if filters.team is not None:
        statement = statement.join(Project, col(Project.id) == Environment.project_id)
    if filters.creator:
        statement = statement.join(User, col(User.id) == Environment.created_by_id)
    return statement


def _count(session: Session, readable: ColumnElement[bool], filters: EnvironmentFilters) -> int:
    counting = _counting(select(func.count()).select_from(Environment), filters)
    return int(session.exec(counting.where(readable, *_conditions(filters))).one())


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
        select(col(Project.team_id), Project.name, Team.name, col(Project.id))
        .join(Team, col(Team.id) == Project.team_id)
        .where(having(col(Environment.project_id) == Project.id))
        .order_by(col(Project.name), col(Team.name))
    ).all()
    creators = session.exec(
        select(User.username)
        .where(having(col(Environment.created_by_id) == User.id))
        .order_by(col(User.username))
    ).all()
    teams = sorted({(int(tid), str(team)) for tid, _name, team, _pid in projects}, key=lambda t: (t[1], t[0]))
    watched = {pid for _tid, _name, _team, pid in projects if pid is not None}
    if actor.user_id is not None and not actor.is_agent:
        my_teams = select(Membership.team_id).where(Membership.user_id == actor.user_id)
        team_projects = session.exec(select(Project.id).where(col(Project.team_id).in_(my_teams)))
        watched |= {pid for pid in team_projects if pid is not None}
    return Options(
        projects=[(pid, str(name), str(team)) for _tid, name, team, pid in projects if pid is not None],
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
        total = _count(session, readable, filters)
        return Listing(items, next_cursor, total, total, {}, Options([], [], [], []), filters)
    # One grouped count gives the per-phase counts, the total (their sum, or the
    # chosen phase's) and, when nothing narrows the list, the visible total.
    phases = session.exec(
        _counting(select(Environment.phase, func.count()).select_from(Environment), filters)
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
        visible_total=_count(session, readable, unfiltered) if narrowed else total,
        phase_counts=phase_counts,
        options=_options(session, actor, readable, filters),
        filters=filters,
    )
