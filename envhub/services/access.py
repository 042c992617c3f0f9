"""Authorization, in one place: may this principal do this action here?

Every use case calls :func:`authorize` (team-wide actions) or
:func:`authorize_environment` (actions on one environment) before it acts, so
the dashboard, REST, MCP, CLI and webhooks cannot differ. Someone with no
access at all gets ``not_found`` rather than ``forbidden``, so objects of other
teams cannot be discovered by probing ids.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_, false, or_, true
from sqlmodel import Session, col, select

from envhub.domain.policy import (
    ENVIRONMENT_ACTIONS,
    ROLE_ACTIONS,
    SHARE_ACTIONS,
    Action,
    capped_share_role,
    principal_allows,
    role_allows,
    strongest_share,
)
from envhub.domain.principals import Principal
from envhub.errors import NotFound, PermissionDenied, ValidationFailed
from envhub.models import Environment, EnvironmentShare, Membership, Project
from envhub.models.base import utcnow


def team_role(session: Session, actor: Principal, team_id: int) -> str | None:
    if actor.is_system:
        return "owner"
    if actor.user_id is None or actor.is_agent:
        return None
    membership = session.exec(
        select(Membership).where(Membership.team_id == team_id, Membership.user_id == actor.user_id)
    ).first()
    return membership.role.value if membership else None


def owner_confirms(
    session: Session,
    actor: Principal,
    team_id: int,
    *,
    action: str,
    confirm: str | None,
    expected: str,
    forbidden: str,
    unconfirmed: str,
    hint: str,
) -> None:
    """For what cannot be undone (a deployment environment's workloads or data): only a team owner,
    who sends ``confirm`` equal to ``expected`` (a name). Refuses with ``forbidden`` or ``unconfirmed``."""
    role = team_role(session, actor, team_id)
    if role != "owner":
        raise PermissionDenied(forbidden, details={"action": action, "role": role, "needed": "owner"})
    if confirm != expected:
        raise ValidationFailed(unconfirmed, hint=hint, details={"field": "confirm", "expected": expected})


def _scope_denied(actor: Principal, action: Action) -> PermissionDenied:
    scopes = sorted(scope.value for scope in actor.scopes or ())
    return PermissionDenied(
        f"this token's scopes ({', '.join(scopes) or 'none'}) do not allow {action.value}",
        hint="Create a token with the scope this needs.",
        details={"action": action.value, "scopes": scopes},
    )


def require_scope(actor: Principal, action: Action) -> None:
    """Refuse a token whose scopes do not cover ``action`` (people pass)."""
    if not principal_allows(actor, action):
        raise _scope_denied(actor, action)


def authorize(session: Session, actor: Principal, team_id: int, action: Action, *, what: str) -> None:
    """Raise unless ``actor`` may do ``action`` anywhere in the team."""
    if actor.is_system:
        return
    role = team_role(session, actor, team_id)
    if role is None:  # includes agents: they see one environment and nothing around it
        raise NotFound(f"{what} was not found")
    if not role_allows(role, action):
        raise PermissionDenied(
            f"your role '{role}' does not allow {action.value}",
            details={"action": action.value, "role": role},
        )
    require_scope(actor, action)


def teams_of(session: Session, actor: Principal) -> list[int] | None:
    """Team ids whose contents the actor can list; None means all (the system principal)."""
    if actor.is_system:
        return None
    if actor.user_id is None or actor.is_agent:
        return []
    require_scope(actor, Action.project_read)
    rows = session.exec(select(Membership.team_id).where(Membership.user_id == actor.user_id))
    return list(rows)


def _share_roles(session: Session, user_id: int, environment_id: int) -> list[str]:
    """Roles the person holds on the environment through shares that have not lapsed."""
    now = utcnow()
    my_teams = {
        m.team_id: m.role.value for m in session.exec(select(Membership).where(Membership.user_id == user_id))
    }
    shares = session.exec(
        select(EnvironmentShare).where(
            EnvironmentShare.environment_id == environment_id,
            or_(col(EnvironmentShare.expires_at).is_(None), col(EnvironmentShare.expires_at) > now),
            or_(
                col(EnvironmentShare.user_id) == user_id,
                col(EnvironmentShare.team_id).in_(list(my_teams) or [-1]),
            ),
        )
    )
    roles = []
    for share in shares:
        if share.user_id is not None:
            roles.append(share.role.value)
        elif share.team_id is not None:
            roles.append(capped_share_role(share.role.value, my_teams[share.team_id]).value)
    return roles


def environment_grants(
    session: Session, actor: Principal, environment: Environment, team_id: int
) -> frozenset[Action]:
    """What the actor's roles and shares allow on the environment, before token scopes."""
    if actor.is_system:
        return ENVIRONMENT_ACTIONS
    if actor.user_id is None or (actor.is_agent and actor.environment_id != environment.id):
        return frozenset()
    granted: set[Action] = set()
    membership = session.exec(
        select(Membership).where(Membership.team_id == team_id, Membership.user_id == actor.user_id)
    ).first()
    if membership is not None:
        granted |= ROLE_ACTIONS[membership.role.value] & ENVIRONMENT_ACTIONS
    assert environment.id is not None
    best = strongest_share(_share_roles(session, actor.user_id, environment.id))
    if best is not None:
        granted |= SHARE_ACTIONS[best]
    return frozenset(granted)


def allowed_environment_actions(
    session: Session, actor: Principal, environment: Environment, team_id: int
) -> frozenset[Action]:
    """What the actor may do to the environment, token scopes included (for showing buttons)."""
    grants = environment_grants(session, actor, environment, team_id)
    return frozenset(action for action in grants if principal_allows(actor, action))


def authorize_environment(
    session: Session, actor: Principal, environment: Environment, action: Action, *, what: str
) -> Project:
    """Raise unless ``actor`` may do ``action`` to ``environment``; returns its project."""
    project = session.get(Project, environment.project_id)
    assert project is not None
    if actor.is_system:
        return project
    grants = environment_grants(session, actor, environment, project.team_id)
    if Action.environment_read not in grants:
        raise NotFound(f"{what} was not found", details={"environment_id": environment.id})
    if action not in grants:
        membership_role = team_role(session, actor, project.team_id)
        raise PermissionDenied(
            f"your access to this environment does not allow {action.value}",
            details={"action": action.value, "role": membership_role or "share"},
        )
    require_scope(actor, action)
    return project


def readable_environments(actor: Principal) -> ColumnElement[bool]:
    """A SQL condition on ``environment`` rows: those the actor may read.

    The same rule as :func:`environment_grants` (every role and every share
    that has not lapsed grants reading), said as a query so that lists across
    projects are filtered, counted and paged by the database: the team's
    projects for its members, shared environments for their grantees, and an
    agent token's one environment if its person can still read it. A token
    without the read scope is refused rather than shown an empty list.
    """
    if actor.is_system:
        return true()
    if actor.user_id is None:
        return false()
    require_scope(actor, Action.environment_read)
    my_teams = select(Membership.team_id).where(Membership.user_id == actor.user_id)
    team_projects = select(Project.id).where(col(Project.team_id).in_(my_teams))
    shared = select(EnvironmentShare.environment_id).where(
        or_(col(EnvironmentShare.expires_at).is_(None), col(EnvironmentShare.expires_at) > utcnow()),
        or_(col(EnvironmentShare.user_id) == actor.user_id, col(EnvironmentShare.team_id).in_(my_teams)),
    )
    readable = or_(col(Environment.project_id).in_(team_projects), col(Environment.id).in_(shared))
    if actor.is_agent:
        return and_(col(Environment.id) == actor.environment_id, readable)
    return readable
