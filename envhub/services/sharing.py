"""Sharing one environment with a person or a whole team, optionally until a date.

Shares are checked by ``services/access.py`` every time: a share past its
``expires_at`` grants nothing, so it lapses by itself with no job to run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_
from sqlmodel import Session, col, select

from envhub.domain.phases import Phase
from envhub.domain.policy import Action, ShareRole
from envhub.domain.principals import Principal
from envhub.errors import Conflict, NotFound, ValidationFailed
from envhub.models import Environment, EnvironmentShare, Membership, Project, Team, User
from envhub.models.base import utcnow
from envhub.services.access import allowed_environment_actions, authorize_environment
from envhub.services.common import AuditTarget, audited


@dataclass(frozen=True, slots=True)
class ShareView:
    share: EnvironmentShare
    grantee: str  # username or team name
    kind: str  # user | team
    created_by: str
    active: bool


@dataclass(frozen=True, slots=True)
class Access:
    team: str
    team_members: list[tuple[str, str]]  # (username, team role) of the owning team
    shares: list[ShareView]


@dataclass(frozen=True, slots=True)
class SharedEnvironment:
    environment: Environment
    project: str
    team: str
    role: str
    expires_at: datetime | None


def _environment(session: Session, environment_id: int) -> Environment:
    environment = session.get(Environment, environment_id)
    if environment is None:
        raise NotFound(
            f"environment {environment_id} was not found", details={"environment_id": environment_id}
        )
    return environment


def _role(value: str) -> ShareRole:
    try:
        return ShareRole(value)
    except ValueError as exc:
        raise ValidationFailed(
            f"role must be one of {', '.join(r.value for r in ShareRole)}", details={"field": "role"}
        ) from exc


def list_access(*, session: Session, actor: Principal, environment_id: int) -> Access:
    """Who can reach the environment: its team's members, and its shares (lapsed ones marked)."""
    environment = _environment(session, environment_id)
    project = authorize_environment(
        session, actor, environment, Action.environment_read, what=f"environment {environment_id}"
    )
    team = session.get(Team, project.team_id)
    members = session.exec(
        select(User.username, Membership.role)
        .join(Membership, col(Membership.user_id) == User.id)
        .where(Membership.team_id == project.team_id)
        .order_by(col(User.username))
    )
    now = utcnow()
    shares = []
    rows = session.exec(
        select(EnvironmentShare)
        .where(EnvironmentShare.environment_id == environment_id)
        .order_by(col(EnvironmentShare.id))
    )
    for share in rows:
        if share.user_id is not None:
            grantee, kind = session.get(User, share.user_id), "user"
            name = grantee.username if isinstance(grantee, User) else "?"
        else:
            grantee_team, kind = session.get(Team, share.team_id), "team"
            name = grantee_team.name if grantee_team else "?"
        creator = session.get(User, share.created_by_id) if share.created_by_id else None
        active = share.expires_at is None or share.expires_at > now
        shares.append(ShareView(share, name, kind, creator.username if creator else "", active))
    return Access(
        team=team.name if team else "",
        team_members=[(name, str(role)) for name, role in members],
        shares=shares,
    )


def _grantee(session: Session, *, user: str | None, team: str | None) -> tuple[User | None, Team | None]:
    if bool(user) == bool(team):
        raise ValidationFailed("share with either a user or a team", details={"field": "grantee"})
    if user:
        wanted = user.strip().lower()
        found = session.exec(
            select(User).where(or_(func.lower(User.username) == wanted, func.lower(User.email) == wanted))
        ).first()
        if found is None:
            raise NotFound(
                f"no one called {user[:100]!r} has signed in to envhub yet", details={"field": "grantee"}
            )
        return found, None
    found_team = session.exec(select(Team).where(Team.name == (team or "").strip())).first()
    if found_team is None:
        raise NotFound(f"there is no team called {team!r}", details={"field": "grantee"})
    return None, found_team


def share_environment(
    *,
    session: Session,
    actor: Principal,
    environment_id: int,
    role: str,
    user: str | None = None,
    team: str | None = None,
    expires_at: datetime | None = None,
) -> EnvironmentShare:
    """Grant (or change) a person's or a team's access to one environment."""
    target = AuditTarget("environment", id=environment_id)
    with audited(session, actor, "environment.share", target):
        environment = _environment(session, environment_id)
        project = authorize_environment(
            session, actor, environment, Action.environment_read, what=f"environment {environment_id}"
        )
        target.name, target.team_id = f"{project.name}/{environment.name}", project.team_id
        authorize_environment(session, actor, environment, Action.environment_share, what="environment")
        wanted = _role(role)
        if environment.phase is Phase.deleted:
            raise Conflict("the environment is deleted")
        if expires_at is not None and (expires_at.tzinfo is None or expires_at <= utcnow()):
            raise ValidationFailed("the expiry must be a time in the future", details={"field": "expires_at"})
        grantee_user, grantee_team = _grantee(session, user=user, team=team)
        if grantee_team is not None and grantee_team.id == project.team_id:
            raise Conflict(f"{grantee_team.name} owns this environment already", details={"field": "grantee"})
        if grantee_user is not None:
            where, grantee = col(EnvironmentShare.user_id) == grantee_user.id, grantee_user.username
        else:
            assert grantee_team is not None
            where, grantee = col(EnvironmentShare.team_id) == grantee_team.id, grantee_team.name
        share = session.exec(
            select(EnvironmentShare).where(EnvironmentShare.environment_id == environment_id, where)
        ).first()
        previous = share.role.value if share else None
        if share is None:
            share = EnvironmentShare(
                environment_id=environment_id,
                user_id=grantee_user.id if grantee_user else None,
                team_id=grantee_team.id if grantee_team else None,
                role=wanted,
                created_by_id=actor.user_id,
            )
        share.role, share.expires_at = wanted, expires_at
        session.add(share)
        session.flush()
        target.team_id = project.team_id
        target.details = {
            "grantee": grantee,
            "kind": "user" if grantee_user else "team",
            "role": wanted.value,
            "previous_role": previous,
            "expires_at": expires_at.isoformat() if expires_at else None,
        }
    return share


def revoke_share(*, session: Session, actor: Principal, share_id: int) -> None:
    target = AuditTarget("environment")
    with audited(session, actor, "environment.unshare", target):
        share = session.get(EnvironmentShare, share_id)
        if share is None:
            raise NotFound(f"share {share_id} was not found")
        environment = _environment(session, share.environment_id)
        target.id = environment.id
        project = authorize_environment(
            session, actor, environment, Action.environment_read, what=f"environment {environment.id}"
        )
        target.name, target.team_id = f"{project.name}/{environment.name}", project.team_id
        authorize_environment(session, actor, environment, Action.environment_share, what="environment")
        session.delete(share)
        target.id = environment.id
        target.team_id = project.team_id
        target.details = {"share_id": share_id, "user_id": share.user_id, "team_id": share.team_id}


def list_shared_environments(*, session: Session, actor: Principal) -> list[SharedEnvironment]:
    """Live environments shared with the actor (directly or through a team), not lapsed."""
    if actor.user_id is None or actor.is_agent:
        return []
    now = utcnow()
    my_teams = list(session.exec(select(Membership.team_id).where(Membership.user_id == actor.user_id)))
    rows = session.exec(
        select(EnvironmentShare, Environment, Project, Team)
        .join(Environment, col(Environment.id) == EnvironmentShare.environment_id)
        .join(Project, col(Project.id) == Environment.project_id)
        .join(Team, col(Team.id) == Project.team_id)
        .where(
            Environment.phase != Phase.deleted,
            or_(col(EnvironmentShare.expires_at).is_(None), col(EnvironmentShare.expires_at) > now),
            or_(
                col(EnvironmentShare.user_id) == actor.user_id,
                col(EnvironmentShare.team_id).in_(my_teams or [-1]),
            ),
            col(Project.team_id).not_in(my_teams or [-1]),
        )
        .order_by(col(Project.name), col(Environment.name))
    )
    seen: dict[int, SharedEnvironment] = {}
    for share, environment, project, team in rows:
        assert environment.id is not None
        grants = allowed_environment_actions(session, actor, environment, project.team_id)
        if Action.environment_read not in grants:
            continue  # e.g. a token without the read scope
        role = (
            "admin"
            if Action.environment_share in grants
            else "editor"
            if Action.environment_shell in grants
            else "viewer"
        )
        seen.setdefault(
            environment.id, SharedEnvironment(environment, project.name, team.name, role, share.expires_at)
        )
    return list(seen.values())
