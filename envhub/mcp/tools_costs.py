"""Tools for hours running and asleep, CPU and memory hours and the estimated cost."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from envhub.domain.principals import Principal
from envhub.mcp.schemas import Cursor, EnvironmentId, Limit, TeamId
from envhub.services import costs
from envhub.services.costs import EnvironmentCostView, TeamCostView
from envhub.services.units import read_only

Window = Annotated[
    Literal["month", "30d"],
    Field(description="month: this calendar month (UTC) up to now; 30d: the last 30 days"),
]


def get_environment_costs(
    actor: Principal, environment_id: EnvironmentId, window: Window = "month"
) -> EnvironmentCostView:
    """An environment's hours running and asleep, reserved CPU and memory hours, and estimated cost.

    ``figures.cost`` is null when the operator set no prices: then read the hours.
    """
    with read_only() as session:
        return costs.environment_costs(
            session=session, actor=actor, environment_id=environment_id, window_name=window
        )


def get_team_costs(
    actor: Principal, team_id: TeamId, window: Window = "month", cursor: Cursor = "", limit: Limit = 50
) -> TeamCostView:
    """A team's total hours and estimated cost over the window, and its environments costliest first."""
    with read_only() as session:
        return costs.team_costs(
            session=session,
            actor=actor,
            team_id=team_id,
            window_name=window,
            cursor=cursor or None,
            limit=limit,
        )
