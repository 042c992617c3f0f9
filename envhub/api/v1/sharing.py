"""``/api/v1`` shares: one environment's access for a person or a team of another team.

Thin translations onto ``services/sharing.py`` (the expiry rule is
``services/inputs.share_expiry``: a bare date means the end of that day, UTC).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from envhub.api.v1.models import Caller, Id, Label, Text, answers
from envhub.domain.policy import ShareRole
from envhub.services import sharing
from envhub.services.inputs import share_expiry
from envhub.services.sharing import Access, SharedEnvironment, ShareView
from envhub.services.units import read_only, unit_of_work

router = APIRouter(prefix="/api/v1", tags=["sharing"])


class ShareIn(BaseModel):
    """Exactly one of ``user`` (a username) and ``team`` (a team's name)."""

    model_config = ConfigDict(extra="forbid")

    role: ShareRole
    user: Text | None = Field(default=None, min_length=1, max_length=100)
    team: Label | None = None
    expires_at: str | None = Field(
        default=None, max_length=40, description="YYYY-MM-DD (end of that day, UTC) or an ISO 8601 time."
    )


class ShareOut(BaseModel):
    id: int
    grantee: str
    kind: str
    role: str
    expires_at: str | None
    active: bool
    created_by: str


class TeamMemberOut(BaseModel):
    username: str
    role: str


class AccessOut(BaseModel):
    team: str
    team_members: list[TeamMemberOut]
    shares: list[ShareOut]


class SharedOut(BaseModel):
    environment_id: int
    project_id: int
    name: str
    project: str
    team: str
    role: str
    phase: str
    expires_at: str | None


def share_view(view: ShareView) -> dict[str, Any]:
    share = view.share
    return {
        "id": share.id,
        "grantee": view.grantee,
        "kind": view.kind,
        "role": str(share.role),
        "expires_at": share.expires_at.isoformat() if share.expires_at else None,
        "active": view.active,
        "created_by": view.created_by,
    }


def access_view(access: Access) -> dict[str, Any]:
    return {
        "team": access.team,
        "team_members": [{"username": name, "role": role} for name, role in access.team_members],
        "shares": [share_view(view) for view in access.shares],
    }


def shared_view(item: SharedEnvironment) -> dict[str, Any]:
    environment = item.environment
    return {
        "environment_id": environment.id,
        "project_id": environment.project_id,
        "name": environment.name,
        "project": item.project,
        "team": item.team,
        "role": item.role,
        "phase": environment.phase.value,
        "expires_at": item.expires_at.isoformat() if item.expires_at else None,
    }


@router.get(
    "/environments/{environment_id}/shares",
    response_model=AccessOut,
    responses=answers(404),
    summary="Who can reach an environment: its team's members and its shares",
)
def list_access(environment_id: Id, actor: Caller) -> dict[str, Any]:
    with read_only() as session:
        return access_view(sharing.list_access(session=session, actor=actor, environment_id=environment_id))


@router.post(
    "/environments/{environment_id}/shares",
    status_code=201,
    response_model=AccessOut,
    responses=answers(404, 409),
    summary="Share an environment with a person or a team (or change their role)",
)
def share(environment_id: Id, body: ShareIn, actor: Caller) -> dict[str, Any]:
    with unit_of_work() as session:
        sharing.share_environment(
            session=session,
            actor=actor,
            environment_id=environment_id,
            role=body.role.value,
            user=body.user,
            team=body.team,
            expires_at=share_expiry(body.expires_at),
        )
        return access_view(sharing.list_access(session=session, actor=actor, environment_id=environment_id))


@router.delete(
    "/shares/{share_id}",
    status_code=204,
    response_class=Response,
    responses=answers(404),
    summary="Revoke a share",
)
def revoke_share(share_id: Id, actor: Caller) -> Response:
    with unit_of_work() as session:
        sharing.revoke_share(session=session, actor=actor, share_id=share_id)
    return Response(status_code=204)


@router.get(
    "/shared-environments",
    response_model=list[SharedOut],
    responses=answers(),
    summary="Environments of other teams shared with you",
)
def shared_with_me(actor: Caller) -> list[dict[str, Any]]:
    with read_only() as session:
        return [shared_view(item) for item in sharing.list_shared_environments(session=session, actor=actor)]
