"""Hours running and asleep, CPU and memory hours and the estimated cost, of an environment and a team.

``GET /api/v1/environments/{id}/costs`` and ``GET /api/v1/teams/{id}/costs``, over
``window=month`` (this calendar month, the default) or ``window=30d``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from envhub.api.v1.models import Caller, Cursor, Id, Limit, answers, model_of
from envhub.services import costs
from envhub.services.costs import EnvironmentCostView, TeamCostView
from envhub.services.units import read_only

router = APIRouter(prefix="/api/v1", tags=["costs"])

WindowQuery = Annotated[
    Literal["month", "30d"],
    Query(description="month: this calendar month (UTC) up to now; 30d: the last 30 days"),
]


@router.get(
    "/environments/{environment_id}/costs",
    response_model=model_of(EnvironmentCostView),
    responses=answers(404),
    summary="Hours running and asleep, reserved CPU and memory hours, and the estimated cost "
    "(null when the operator set no prices)",
)
def environment_costs(
    environment_id: Id, actor: Caller, window: WindowQuery = "month"
) -> EnvironmentCostView:
    with read_only() as session:
        return costs.environment_costs(
            session=session, actor=actor, environment_id=environment_id, window_name=window
        )


@router.get(
    "/teams/{team_id}/costs",
    response_model=model_of(TeamCostView),
    responses=answers(404),
    summary="The team's total over the window and its environments, costliest first (most hours "
    "running when no prices are set), a page at a time",
)
def team_costs(
    team_id: Id, actor: Caller, window: WindowQuery = "month", cursor: Cursor = None, limit: Limit = 50
) -> TeamCostView:
    with read_only() as session:
        return costs.team_costs(
            session=session, actor=actor, team_id=team_id, window_name=window, cursor=cursor, limit=limit
        )
