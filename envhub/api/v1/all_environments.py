"""``GET /api/v1/environments``: every environment the caller can see, across projects and teams.

The dashboard's Environments page, the CLI's ``envhub env ls`` and MCP's
``find_environments`` show the same view (``environment_views.visible_environments``):
newest first, filtered by project, team, phase, kind, trigger, creator or a
search over names, a page at a time by cursor.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from envhub.api.v1.models import NO_NUL, Caller, Cursor, Limit, answers, model_of
from envhub.domain.phases import Phase
from envhub.domain.specs import EnvironmentKind, Trigger
from envhub.services import environment_views
from envhub.services.environment_listing import SEARCH_MAX, filters_from_query
from envhub.services.environment_views import ListingRow
from envhub.services.units import read_only

router = APIRouter(prefix="/api/v1", tags=["environments"])

ListingRowModel = model_of(ListingRow)


class VisibleEnvironments(BaseModel):
    """One page of the environments one can see; ``total`` counts every page."""

    items: list[ListingRowModel]  # type: ignore[valid-type]
    next_cursor: str | None
    total: int


@router.get(
    "/environments",
    response_model=VisibleEnvironments,
    responses=answers(),
    summary="List every environment you can see, in every project and team, newest first",
)
def list_visible_environments(
    actor: Caller,
    cursor: Cursor = None,
    limit: Limit = 50,
    project: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="Only this project's.")] = None,
    team: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="Only this team's projects'.")] = None,
    phase: Annotated[
        Phase | None, Query(description="Only this phase (deleted ones only when asked).")
    ] = None,
    kind: Annotated[EnvironmentKind | None, Query()] = None,
    trigger: Annotated[Trigger | None, Query(description="What made it.")] = None,
    creator: Annotated[
        str | None, Query(max_length=100, pattern=NO_NUL, description="Who made it (a username).")
    ] = None,
    q: Annotated[
        str,
        Query(
            max_length=SEARCH_MAX,
            pattern=NO_NUL,
            description="Part of an environment's, project's or team's name; \"project/env\" narrows both.",
        ),
    ] = "",
    deleted: Annotated[bool, Query(description="Include deleted environments.")] = False,
) -> dict[str, Any]:
    query = {
        "project": project,
        "team": team,
        "phase": phase.value if phase else None,
        "kind": kind.value if kind else None,
        "trigger": trigger.value if trigger else None,
        "creator": creator,
        "q": q,
        "deleted": "1" if deleted else None,
    }
    filters = filters_from_query({key: str(value) for key, value in query.items() if value not in (None, "")})
    with read_only() as session:
        listing = environment_views.visible_environments(
            session=session, actor=actor, filters=filters, cursor=cursor, limit=limit
        )
    return {
        "items": listing["rows"],
        "next_cursor": listing["next_cursor"] or None,
        "total": listing["total"],
    }
