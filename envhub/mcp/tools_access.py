"""Tools for who is calling, what they can see, and who else may reach an environment."""

from __future__ import annotations

from typing import Annotated, Literal, TypedDict

from pydantic import Field

from envhub.domain.principals import Principal
from envhub.mcp.schemas import Cursor, EnvironmentId, Limit
from envhub.services import identity_views, inputs, listing, sharing, tokens
from envhub.services.identity_views import AccessOverview, SharedRow, TokenRow
from envhub.services.project_views import ProjectRow
from envhub.services.units import read_only, unit_of_work


class Identity(TypedDict):
    name: str
    type: str  # token (a personal token) or agent (an agent token)
    user_id: int | None
    scopes: list[str] | None  # None: everything the person's roles allow
    environment_id: int | None  # an agent token's one environment


class ProjectList(TypedDict):
    projects: list[ProjectRow]
    next_cursor: str  # pass back as ``cursor`` for the next page; "" on the last one
    shared: list[SharedRow]  # environments of other teams shared with you


class TokenList(TypedDict):
    tokens: list[TokenRow]


class Revoked(TypedDict):
    share_id: int
    revoked: bool


def whoami(actor: Principal) -> Identity:
    """Who this token acts for, its scopes, and (for an agent token) the one environment it may touch."""
    return Identity(
        name=actor.name,
        type=actor.type.value,
        user_id=actor.user_id,
        scopes=sorted(scope.value for scope in actor.scopes) if actor.scopes is not None else None,
        environment_id=actor.environment_id,
    )


def list_projects(
    actor: Principal,
    search: Annotated[str, Field(max_length=100, description="Part of the project's name.")] = "",
    cursor: Cursor = "",
    limit: Limit = 20,
) -> ProjectList:
    """List the projects you can see (by name), and the environments of other teams shared with you."""
    with read_only() as session:
        page = listing.project_page(
            session=session, actor=actor, cursor=cursor or None, limit=limit, search=search
        )
        shared = identity_views.shared_rows(session=session, actor=actor)
    return ProjectList(projects=page.items, next_cursor=page.next_cursor or "", shared=shared)


def list_shares(actor: Principal, environment_id: EnvironmentId) -> AccessOverview:
    """Who can reach an environment: its team's members and its shares (lapsed ones marked)."""
    with read_only() as session:
        return identity_views.access_overview(session=session, actor=actor, environment_id=environment_id)


def share_environment(
    actor: Principal,
    environment_id: EnvironmentId,
    role: Literal["viewer", "editor", "admin"],
    user: Annotated[str | None, Field(max_length=254, description="A username or email.")] = None,
    team: Annotated[str | None, Field(max_length=100, description="A team's name.")] = None,
    expires: Annotated[
        str, Field(max_length=40, description="YYYY-MM-DD (end of that day, UTC) or ISO 8601; '' for never.")
    ] = "",
) -> AccessOverview:
    """Share an environment with a person or a whole team (or change their role); needs the admin scope."""
    with unit_of_work() as session:
        sharing.share_environment(
            session=session,
            actor=actor,
            environment_id=environment_id,
            role=role,
            user=user,
            team=team,
            expires_at=inputs.share_expiry(expires),
        )
        return identity_views.access_overview(session=session, actor=actor, environment_id=environment_id)


def revoke_share(
    actor: Principal, share_id: Annotated[int, Field(ge=1, le=2**31 - 1, description="From list_shares.")]
) -> Revoked:
    """Take a share away; needs the admin scope."""
    with unit_of_work() as session:
        sharing.revoke_share(session=session, actor=actor, share_id=share_id)
    return Revoked(share_id=share_id, revoked=True)


def list_tokens(actor: Principal) -> TokenList:
    """Your tokens (personal and agent), newest first; their values are never shown."""
    with read_only() as session:
        return TokenList(tokens=identity_views.token_rows(session=session, actor=actor))


def revoke_token(
    actor: Principal, token_id: Annotated[int, Field(ge=1, le=2**31 - 1, description="From list_tokens.")]
) -> TokenRow:
    """Revoke a token; through MCP only the token in use (an agent done with its work revokes its own).

    Tokens are made by people only (the dashboard's Tokens page, ``envhub login``).
    """
    with unit_of_work() as session:
        return identity_views.token_row(tokens.revoke_token(session=session, actor=actor, token_id=token_id))
