"""``GET /api/v1/environments/{id}/usage``: CPU and memory per container, now and over the last minutes."""

from __future__ import annotations

from fastapi import APIRouter

from envhub.api.v1.models import Caller, Id, answers, model_of
from envhub.services import ports, usage
from envhub.services.units import read_only
from envhub.services.usage import UsageView

router = APIRouter(prefix="/api/v1", tags=["environments"])

UsageModel = model_of(UsageView)


@router.get(
    "/environments/{environment_id}/usage",
    response_model=UsageModel,
    responses=answers(404, 502),
    summary="CPU (millicores) and memory per container, with readings of the last minutes; "
    "available=false with a note when the runtime cannot measure (a cluster without the metrics API)",
)
def environment_usage(environment_id: Id, actor: Caller) -> UsageView:
    with read_only() as session:
        return usage.environment_usage(
            session=session, actor=actor, runtime=ports.runtime(), environment_id=environment_id
        )
