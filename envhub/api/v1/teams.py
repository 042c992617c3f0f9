"""``/api/v1`` teams, their members and invitations.

Thin translations onto ``services/teams.py``; roles are owner, admin,
member and viewer. An invitation is accepted when its address signs in.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, ConfigDict, Field

from envhub.api.v1.models import Caller, Id, Label, Text, answers
from envhub.domain.policy import TeamRole
from envhub.models import Invite, Team
from envhub.services import teams
from envhub.services.teams import Member, TeamSummary
from envhub.services.units import read_only, unit_of_work

router = APIRouter(prefix="/api/v1", tags=["teams"])

# The address check of services/teams.py, for the document.
EMAIL_PATTERN = r"^[^@\s\x00]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})+$"
UserId = Annotated[int, Path(ge=1, le=2**31 - 1)]


class TeamIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Label
    display_name: Text = Field(default="", max_length=200)


class RoleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: TeamRole


class InviteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(max_length=320, pattern=EMAIL_PATTERN)
    role: TeamRole = TeamRole.member


class TeamOut(BaseModel):
    id: int
    name: str
    display_name: str
    role: str | None = Field(description="Your role in it; null when you see it by another right.")
    members: int | None


class MemberOut(BaseModel):
    user_id: int
    username: str
    display_name: str
    email: str
    role: str


class InviteOut(BaseModel):
    id: int
    team_id: int
    email: str
    role: str
    created_at: str
    expires_at: str


def team_view(team: Team, role: str | None = None, members: int | None = None) -> dict[str, Any]:
    return {
        "id": team.id,
        "name": team.name,
        "display_name": team.display_name,
        "role": role,
        "members": members,
    }


def summary_view(summary: TeamSummary) -> dict[str, Any]:
    return team_view(summary.team, summary.role, summary.members)


def member_view(member: Member) -> dict[str, Any]:
    user = member.user
    return {
        "user_id": user.id,
        "username": user.username,
        "display_name": user.display_name,
        "email": user.email,
        "role": member.role,
    }


def invite_view(invite: Invite) -> dict[str, Any]:
    return {
        "id": invite.id,
        "team_id": invite.team_id,
        "email": invite.email,
        "role": str(invite.role),
        "created_at": invite.created_at.isoformat(),
        "expires_at": invite.expires_at.isoformat(),
    }


@router.get("/teams", response_model=list[TeamOut], responses=answers(), summary="Your teams")
def list_teams(actor: Caller) -> list[dict[str, Any]]:
    with read_only() as session:
        return [summary_view(s) for s in teams.list_my_teams(session=session, actor=actor)]


@router.post(
    "/teams", status_code=201, response_model=TeamOut, responses=answers(409), summary="Create a team"
)
def create_team(body: TeamIn, actor: Caller) -> dict[str, Any]:
    with unit_of_work() as session:
        team = teams.create_team(session=session, actor=actor, name=body.name, display_name=body.display_name)
        return team_view(team, "owner", 1)


@router.get("/teams/{team_id}", response_model=TeamOut, responses=answers(404), summary="Get a team")
def get_team(team_id: Id, actor: Caller) -> dict[str, Any]:
    with read_only() as session:
        mine = {s.team.id: s for s in teams.list_my_teams(session=session, actor=actor)}
        if team_id in mine:
            return summary_view(mine[team_id])
        return team_view(teams.get_team(session=session, actor=actor, team_id=team_id))


@router.get(
    "/teams/{team_id}/members",
    response_model=list[MemberOut],
    responses=answers(404),
    summary="A team's members",
)
def list_members(team_id: Id, actor: Caller) -> list[dict[str, Any]]:
    with read_only() as session:
        return [member_view(m) for m in teams.list_members(session=session, actor=actor, team_id=team_id)]


@router.put(
    "/teams/{team_id}/members/{user_id}",
    response_model=MemberOut,
    responses=answers(404, 409),
    summary="Change a member's role",
)
def change_role(team_id: Id, user_id: UserId, body: RoleIn, actor: Caller) -> dict[str, Any]:
    with unit_of_work() as session:
        teams.change_role(
            session=session, actor=actor, team_id=team_id, user_id=user_id, role=body.role.value
        )
        members = teams.list_members(session=session, actor=actor, team_id=team_id)
        return member_view(next(m for m in members if m.user.id == user_id))


@router.delete(
    "/teams/{team_id}/members/{user_id}",
    status_code=204,
    response_class=Response,
    responses=answers(404, 409),
    summary="Remove a member from a team",
)
def remove_member(team_id: Id, user_id: UserId, actor: Caller) -> Response:
    with unit_of_work() as session:
        teams.remove_member(session=session, actor=actor, team_id=team_id, user_id=user_id)
    return Response(status_code=204)


@router.get(
    "/teams/{team_id}/invitations",
    response_model=list[InviteOut],
    responses=answers(404),
    summary="A team's open invitations",
)
def list_invitations(team_id: Id, actor: Caller) -> list[dict[str, Any]]:
    with read_only() as session:
        return [invite_view(i) for i in teams.list_invites(session=session, actor=actor, team_id=team_id)]


@router.post(
    "/teams/{team_id}/invitations",
    status_code=201,
    response_model=InviteOut,
    responses=answers(404, 409),
    summary="Invite an email address into a team",
)
def invite(team_id: Id, body: InviteIn, actor: Caller) -> dict[str, Any]:
    with unit_of_work() as session:
        return invite_view(
            teams.invite(
                session=session, actor=actor, team_id=team_id, email=body.email, role=body.role.value
            )
        )


@router.delete(
    "/invitations/{invite_id}",
    status_code=204,
    response_class=Response,
    responses=answers(404, 409),
    summary="Revoke an invitation",
)
def revoke_invitation(invite_id: Id, actor: Caller) -> Response:
    with unit_of_work() as session:
        teams.revoke_invite(session=session, actor=actor, invite_id=invite_id)
    return Response(status_code=204)
