"""``/api/v1`` managed services of an environment: what it was given, and rotating a credential.

Thin translations onto ``services/backing.py``. A project's services are
declared on the project itself (``backing`` in ``POST``/``PATCH /projects``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel

from envhub.api.v1.models import Caller, Id, answers
from envhub.domain.backing import SERVICE_NAME
from envhub.services import backing, ports
from envhub.services.backing import ManagedServiceRow
from envhub.services.units import read_only, unit_of_work

router = APIRouter(prefix="/api/v1", tags=["services"])

ServiceName = Annotated[
    str, Path(pattern=SERVICE_NAME.pattern, description="The service's name in the project.")
]


class ManagedServiceOut(BaseModel):
    name: str
    kind: str
    kind_label: str
    state: str
    state_label: str
    backend: str
    variables: list[str]
    reason: str
    error_code: str
    credential_set: str
    rotatable: bool


@router.get(
    "/environments/{environment_id}/services",
    response_model=list[ManagedServiceOut],
    responses=answers(404),
    summary="The managed services of an environment (variable names, never values)",
)
def list_services(environment_id: Id, actor: Caller) -> list[ManagedServiceRow]:
    with read_only() as session:
        return backing.environment_services(session=session, actor=actor, environment_id=environment_id)


@router.post(
    "/environments/{environment_id}/services/{service}/rotate",
    response_model=list[ManagedServiceOut],
    responses=answers(404, 409),
    summary="Replace a service's credential and redeploy the environment with it",
)
def rotate(environment_id: Id, service: ServiceName, actor: Caller) -> list[ManagedServiceRow]:
    with unit_of_work() as session:
        return backing.rotate_service_credentials(
            session=session, actor=actor, queue=ports.queue(), environment_id=environment_id, service=service
        )
