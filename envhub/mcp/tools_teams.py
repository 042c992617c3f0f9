"""Tools for teams (members, roles, invitations) and the audit trail."""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypedDict

from pydantic import Field

from envhub.domain.principals import Principal
from envhub.mcp.schemas import Cursor, Limit, TeamId, UserId
from envhub.services import identity_views, inputs, listing, teams
from envhub.services.audit_log import AuditFilter
from envhub.services.identity_views import InviteRow, TeamOverview, TeamRow
from envhub.services.units import read_only, unit_of_work

Role = Literal["owner", "admin", "member", "viewer"]


class TeamList(TypedDict):
    teams: list[TeamRow]


class Done(TypedDict):
    done: bool


class AuditTrail(TypedDict):
    events: list[dict[str, Any]]  # the records REST's /audit/trail and the export carry
    next_cursor: str  # pass back as ``cursor`` for older events; "" at the oldest


def list_teams(actor: Principal) -> TeamList:
    """The teams you are in, with your role in each."""
    with read_only() as session:
        return TeamList(teams=identity_views.team_rows(session=session, actor=actor))


def create_team(
    actor: Principal,
    name: Annotated[str, Field(min_length=1, max_length=63, description="DNS-safe name.")],
    display_name: Annotated[str, Field(max_length=200)] = "",
) -> TeamOverview:
    """Create a team with you as its owner (people, and their admin-scoped tokens)."""
    with unit_of_work() as session:
        team = teams.create_team(session=session, actor=actor, name=name, display_name=display_name)
        return identity_views.team_overview(session=session, actor=actor, team_id=team.id or 0)


def get_team(actor: Principal, team_id: TeamId) -> TeamOverview:
    """A team: its members and their roles, and (for those who manage it) open invitations."""
    with read_only() as session:
        return identity_views.team_overview(session=session, actor=actor, team_id=team_id)


def invite_member(
    actor: Principal,
    team_id: TeamId,
    email: Annotated[str, Field(min_length=3, max_length=254)],
    role: Role = "member",
) -> InviteRow:
    """Invite someone to a team by email; they join when they first sign in with it."""
    with unit_of_work() as session:
        return identity_views.invite_row(
            teams.invite(session=session, actor=actor, team_id=team_id, email=email, role=role)
        )


def revoke_invite(
    actor: Principal, invite_id: Annotated[int, Field(ge=1, le=2**31 - 1, description="From get_team.")]
) -> Done:
    """Withdraw an open invitation."""
    with unit_of_work() as session:
        teams.revoke_invite(session=session, actor=actor, invite_id=invite_id)
    return Done(done=True)


def change_role(actor: Principal, team_id: TeamId, user_id: UserId, role: Role) -> TeamOverview:
    """Change a member's role in a team (making or unmaking owners needs ownership)."""
    with unit_of_work() as session:
        teams.change_role(session=session, actor=actor, team_id=team_id, user_id=user_id, role=role)
        return identity_views.team_overview(session=session, actor=actor, team_id=team_id)


def remove_member(actor: Principal, team_id: TeamId, user_id: UserId) -> Done:
    """Take someone out of a team."""
    with unit_of_work() as session:
        teams.remove_member(session=session, actor=actor, team_id=team_id, user_id=user_id)
    return Done(done=True)


def search_audit(
    actor: Principal,
    action: Annotated[str, Field(max_length=200, description="e.g. environment.create")] = "",
    who: Annotated[str, Field(max_length=200, description="The actor's name.")] = "",
    target: Annotated[str, Field(max_length=200, description="e.g. shop/pr-12")] = "",
    outcome: Literal["", "success", "failure"] = "",
    since: Annotated[str, Field(max_length=40, description="ISO 8601; '' for no bound.")] = "",
    until: Annotated[str, Field(max_length=40, description="ISO 8601; '' for no bound.")] = "",
    team_id: TeamId | None = None,
    cursor: Cursor = "",
    limit: Limit = 25,
) -> AuditTrail:
    """The audit trail of your teams, newest first: who did what to which object, and how it ended."""
    filters = AuditFilter(
        actor=who,
        target=target,
        action=action,
        outcome=outcome,
        since=inputs.optional_moment(since),
        until=inputs.optional_moment(until),
        team_id=team_id,
    )
    with read_only() as session:
        page = listing.audit_page(
            session=session, actor=actor, filters=filters, cursor=cursor or None, limit=limit
        )
    return AuditTrail(events=page.items, next_cursor=page.next_cursor or "")
