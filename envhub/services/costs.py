"""Hours running and asleep, CPU and memory hours and the estimated cost, per environment and per team.

The figures come from the environments' spans (``models/environment_span.py``)
over a window, this calendar month or the last 30 days (``domain/costs.py``
does the arithmetic), priced with the operator's ``ENVHUB_PRICE_*`` settings.
Without prices ``cost`` is None and the faces show hours: never a cost of 0.
Each answer reads the spans in one query, however many environments it covers.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any, TypedDict

from sqlmodel import Session, col, or_, select

from envhub.config import get_settings
from envhub.domain import humanize as fmt
from envhub.domain.costs import (
    GIB,
    Prices,
    Span,
    Totals,
    Window,
    WindowName,
    cost,
    reservation,
    totals,
    window,
)
from envhub.domain.policy import Action
from envhub.domain.principals import Principal
from envhub.errors import InvalidCursor, NotFound
from envhub.models import Environment, EnvironmentSpan, Project, Team
from envhub.services import cursors
from envhub.services.access import authorize
from envhub.services.environments import get_environment

_CURSOR = "environment_costs"
DEFAULT_LIMIT = 50


class UsageFigures(TypedDict):
    running_hours: float
    asleep_hours: float
    cpu_hours: float  # reserved cores x hours running
    memory_gib_hours: float  # reserved GiB x hours running
    cost: float | None  # None: the operator set no prices
    currency: str
    summary: str  # "12.5 h running · 3 h asleep · 25 CPU-h · 50 GiB-h · 1.23 USD"


class EnvironmentCost(TypedDict):
    environment_id: int
    name: str
    project_id: int
    project: str
    phase: str
    href: str
    figures: UsageFigures


class EnvironmentCostView(TypedDict):
    environment_id: int
    window: str  # "month" or "30d"
    start: str  # ISO 8601
    end: str
    reserved_cpu_millicores: int  # what it reserves while running (its clamped quota's requests)
    reserved_memory_bytes: int
    reserved: str  # "2 CPU · 4 GiB"
    priced: bool
    figures: UsageFigures


class TeamCostView(TypedDict):
    team_id: int
    team: str
    window: str
    start: str
    end: str
    priced: bool
    total: UsageFigures  # every environment of the team over the window, not only this page
    environments: list[EnvironmentCost]  # the costliest first (most hours running without prices)
    next_cursor: str | None


def prices() -> Prices:
    settings = get_settings()
    return Prices(
        cpu_hour=settings.price_cpu_hour,
        memory_gib_hour=settings.price_memory_gib_hour,
        currency=settings.price_currency,
    )


def _number(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def figures(total: Totals, priced: Prices) -> UsageFigures:
    amount = cost(total, priced)
    parts = [
        f"{_number(total.running_hours)} h running",
        f"{_number(total.asleep_hours)} h asleep",
        f"{_number(total.cpu_hours)} CPU-h",
        f"{_number(total.memory_gib_hours)} GiB-h",
    ]
    if amount is not None:
        parts.append(f"{amount:.2f} {priced.currency}")
    return UsageFigures(
        running_hours=round(total.running_hours, 3),
        asleep_hours=round(total.asleep_hours, 3),
        cpu_hours=round(total.cpu_hours, 3),
        memory_gib_hours=round(total.memory_gib_hours, 3),
        cost=amount,
        currency=priced.currency,
        summary=" · ".join(parts),
    )


def _window(name: str, now: datetime | None) -> Window:
    return window(name, now or fmt.now())


def _overlapping(within: Window) -> Any:
    return (
        or_(col(EnvironmentSpan.ended_at).is_(None), col(EnvironmentSpan.ended_at) > within.start),
        col(EnvironmentSpan.started_at) < within.end,
    )


def _cursor(key: tuple[int, int]) -> str:
    return cursors.encode(_CURSOR, (str(key[0]), key[1]))


def _after(cursor: str) -> tuple[int, int]:
    """The (minus measure, id) a page continues after; the measure travels as text (it may be 0)."""
    measure, environment_id = cursors.decode(cursor, _CURSOR, (str, int))
    try:
        return int(measure), int(environment_id)
    except ValueError:
        raise InvalidCursor("the cursor is not one this list gave out", details={"field": "cursor"}) from None


def environment_costs(
    *,
    session: Session,
    actor: Principal,
    environment_id: int,
    window_name: str = WindowName.month.value,
    now: datetime | None = None,
) -> EnvironmentCostView:
    """One environment's hours and cost over the window (this calendar month by default)."""
    environment = get_environment(session=session, actor=actor, environment_id=environment_id)
    within = _window(window_name, now)
    rows = session.exec(
        select(EnvironmentSpan).where(EnvironmentSpan.environment_id == environment_id, *_overlapping(within))
    ).all()
    spans = [row.as_span(environment.spec) for row in rows]
    reserved = reservation(environment.spec)
    priced = prices()
    return EnvironmentCostView(
        environment_id=environment_id,
        window=within.name.value,
        start=within.start.isoformat(),
        end=within.end.isoformat(),
        reserved_cpu_millicores=reserved.cpu_millicores,
        reserved_memory_bytes=reserved.memory_bytes,
        reserved=f"{reserved.cpu_millicores / 1000:g} CPU · {reserved.memory_bytes / GIB:.3g} GiB",
        priced=priced.set,
        figures=figures(totals(spans, within), priced),
    )


def team_costs(
    *,
    session: Session,
    actor: Principal,
    team_id: int,
    window_name: str = WindowName.month.value,
    cursor: str | None = None,
    limit: int = DEFAULT_LIMIT,
    now: datetime | None = None,
) -> TeamCostView:
    """A team's total over the window and its environments, costliest first, a page at a time.

    Every environment of the team's projects that was running or asleep during the window is
    counted, deleted ones included (they cost while they lived).
    """
    authorize(session, actor, team_id, Action.team_read, what=f"team {team_id}")
    team = session.get(Team, team_id)
    if team is None:
        raise NotFound(f"team {team_id} was not found")
    within = _window(window_name, now)
    limit = max(1, min(limit, cursors.MAX_LIMIT))
    after = _after(cursor) if cursor else None
    rows = session.exec(
        select(EnvironmentSpan, Environment, Project)
        .join(Environment, col(Environment.id) == EnvironmentSpan.environment_id)
        .join(Project, col(Project.id) == Environment.project_id)
        .where(Project.team_id == team_id, *_overlapping(within))
    ).all()
    spans: dict[int, list[Span]] = defaultdict(list)
    owners: dict[int, tuple[Environment, Project]] = {}
    for span, environment, project in rows:
        assert environment.id is not None
        spans[environment.id].append(span.as_span(environment.spec))
        owners[environment.id] = (environment, project)
    priced = prices()
    each = {environment_id: totals(listed, within) for environment_id, listed in spans.items()}

    def key(environment_id: int) -> tuple[int, int]:
        total = each[environment_id]
        amount = cost(total, priced)
        measure = amount if amount is not None else total.running_hours
        return (-round(measure * 1_000_000), environment_id)

    ordered = sorted(each, key=key)
    if after is not None:
        ordered = [environment_id for environment_id in ordered if key(environment_id) > after]
    page, more = ordered[:limit], len(ordered) > limit
    listed = []
    for environment_id in page:
        environment, project = owners[environment_id]
        listed.append(
            EnvironmentCost(
                environment_id=environment_id,
                name=environment.name,
                project_id=project.id or 0,
                project=project.name,
                phase=environment.phase.value,
                href=f"/projects/{project.id}/environments/{environment_id}",
                figures=figures(each[environment_id], priced),
            )
        )
    return TeamCostView(
        team_id=team_id,
        team=team.name,
        window=within.name.value,
        start=within.start.isoformat(),
        end=within.end.isoformat(),
        priced=priced.set,
        total=figures(sum(each.values(), Totals()), priced),
        environments=listed,
        next_cursor=_cursor(key(page[-1])) if more and page else None,
    )
