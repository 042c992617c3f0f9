"""``/api/v1`` secrets: write-only. Names and times can be listed; values never leave envhub.

A project's secrets become environment variables of its environments; a
team's (integration) secrets serve envhub's integrations. Thin translations
onto ``services/secrets.py``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, ConfigDict, Field

from envhub.api.v1.models import Caller, Id, answers
from envhub.services import secrets
from envhub.services.secrets import SecretInfo
from envhub.services.units import read_only, unit_of_work

router = APIRouter(prefix="/api/v1", tags=["secrets"])

SecretName = Annotated[
    str, Path(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,99}$", description="A variable name (it becomes one).")
]


class SecretValue(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: str = Field(max_length=65_536, description="Stored encrypted; never returned.")


class Secret(BaseModel):
    """What may be shown about a secret: never its value."""

    id: int
    name: str
    updated_at: str


def secret_view(info: SecretInfo) -> dict[str, Any]:
    return {"id": info.id, "name": info.name, "updated_at": info.updated_at.isoformat()}


@router.get(
    "/projects/{project_id}/secrets",
    response_model=list[Secret],
    responses=answers(404),
    summary="The names of a project's secrets",
)
def list_project_secrets(project_id: Id, actor: Caller) -> list[dict[str, Any]]:
    with read_only() as session:
        return [
            secret_view(i) for i in secrets.list_secrets(session=session, actor=actor, project_id=project_id)
        ]


@router.put(
    "/projects/{project_id}/secrets/{name}",
    response_model=Secret,
    responses=answers(404),
    summary="Set (create or replace) a project secret",
)
def set_project_secret(project_id: Id, name: SecretName, body: SecretValue, actor: Caller) -> dict[str, Any]:
    with unit_of_work() as session:
        return secret_view(
            secrets.set_secret(
                session=session, actor=actor, name=name, value=body.value, project_id=project_id
            )
        )


@router.get(
    "/teams/{team_id}/secrets",
    response_model=list[Secret],
    responses=answers(404),
    summary="The names of a team's integration secrets",
)
def list_team_secrets(team_id: Id, actor: Caller) -> list[dict[str, Any]]:
    with read_only() as session:
        return [secret_view(i) for i in secrets.list_secrets(session=session, actor=actor, team_id=team_id)]


@router.put(
    "/teams/{team_id}/secrets/{name}",
    response_model=Secret,
    responses=answers(404),
    summary="Set (create or replace) a team's integration secret",
)
def set_team_secret(team_id: Id, name: SecretName, body: SecretValue, actor: Caller) -> dict[str, Any]:
    with unit_of_work() as session:
        return secret_view(
            secrets.set_secret(session=session, actor=actor, name=name, value=body.value, team_id=team_id)
        )


@router.delete(
    "/secrets/{secret_id}",
    status_code=204,
    response_class=Response,
    responses=answers(404),
    summary="Delete a secret",
)
def delete_secret(secret_id: Id, actor: Caller) -> Response:
    with unit_of_work() as session:
        secrets.delete_secret(session=session, actor=actor, secret_id=secret_id)
    return Response(status_code=204)
