"""Teams: members and their roles, invitations by email, creating a team.

Owners may do everything, including granting or removing ownership; admins
manage members below owner. A team never loses its last owner. Invitations
are accepted when the invited address signs in (``accept_invites``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func
from sqlmodel import Session, col, select

from envhub.config import AuthMode, get_settings
from envhub.domain.naming import validate_label
from envhub.domain.policy import Action, TeamRole
from envhub.domain.principals import Principal, PrincipalType
from envhub.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from envhub.models import Invite, Membership, Team, User
from envhub.models.base import utcnow
from envhub.services.access import authorize, require_scope
from envhub.services.common import AuditTarget, audit, audited

INVITE_DAYS = 14
_EMAIL = re.compile(r"^[^@\s]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})+$")


@dataclass(frozen=True, slots=True)
class TeamSummary:
    team: Team
    role: str
    members: int


@dataclass(frozen=True, slots=True)
class Member:
    user: User
    role: str


def _role(value: str) -> TeamRole:
    try:
        return TeamRole(value)
    except ValueError as exc:
        raise ValidationFailed(
            f"role must be one of {', '.join(r.value for r in TeamRole)}", details={"field": "role"}
        ) from exc


def _existing(session: Session, team_id: int) -> int | None:
    """``team_id`` if there is such a team, for the audit record (which must not name a missing one)."""
    return team_id if session.get(Team, team_id) is not None else None


def _team(session: Session, actor: Principal, team_id: int, action: Action) -> Team:
    authorize(session, actor, team_id, action, what=f"team {team_id}")
    team = session.get(Team, team_id)
    if team is None:
        raise NotFound(f"team {team_id} was not found")
    return team


def create_team(*, session: Session, actor: Principal, name: str, display_name: str = "") -> Team:
    """A new team with the actor as its owner."""
    target = AuditTarget("team", name=name)
    with audited(session, actor, "team.create", target):
        if actor.user_id is None or actor.type is PrincipalType.agent:
            raise PermissionDenied("only people (and their admin-scoped tokens) create teams")
        require_scope(actor, Action.team_own)
        validate_label(name, field="team name")
        if len(display_name) > 200:
            raise ValidationFailed(
                "display name is longer than 200 characters", details={"field": "display_name"}
            )
        if session.exec(select(Team).where(Team.name == name)).first() is not None:
            raise Conflict(f"a team named {name!r} already exists", details={"field": "name"})
        team = Team(name=name, display_name=display_name.strip() or name)
        session.add(team)
        session.flush()
        assert team.id is not None
        session.add(Membership(team_id=team.id, user_id=actor.user_id, role=TeamRole.owner))
        target.id, target.team_id = team.id, team.id
        target.id = team.id
        target.name = name
        target.team_id = team.id
    return team


def list_my_teams(*, session: Session, actor: Principal) -> list[TeamSummary]:
    if actor.user_id is None or actor.is_agent:
        return []
    require_scope(actor, Action.team_read)
    counts = select(Membership.team_id, func.count().label("n")).group_by(col(Membership.team_id)).subquery()
    rows = session.exec(
        select(Team, Membership.role, counts.c.n)
        .join(Membership, col(Membership.team_id) == Team.id)
        .join(counts, counts.c.team_id == Team.id)
        .where(Membership.user_id == actor.user_id)
        .order_by(col(Team.name))
    )
    return [TeamSummary(team=team, role=str(role), members=int(n)) for team, role, n in rows]


def get_team(*, session: Session, actor: Principal, team_id: int) -> Team:
    return _team(session, actor, team_id, Action.team_read)


def list_members(*, session: Session, actor: Principal, team_id: int) -> list[Member]:
    _team(session, actor, team_id, Action.team_read)
    rows = session.exec(
        select(User, Membership.role)
        .join(Membership, col(Membership.user_id) == User.id)
        .where(Membership.team_id == team_id)
        .order_by(col(User.username))
    )
    return [Member(user=user, role=str(role)) for user, role in rows]


def list_invites(*, session: Session, actor: Principal, team_id: int) -> list[Invite]:
    """Open invitations (email addresses are for those who manage the team)."""
    _team(session, actor, team_id, Action.team_manage)
    return list(
        session.exec(
            select(Invite)
            .where(
                Invite.team_id == team_id,
                col(Invite.accepted_at).is_(None),
                col(Invite.revoked_at).is_(None),
                col(Invite.expires_at) > utcnow(),
            )
            .order_by(col(Invite.created_at).desc())
        )
    )


def normalize_email(email: str) -> str:
    value = email.strip().lower()
    if len(value) > 320 or not _EMAIL.match(value):
        raise ValidationFailed(f"{email[:100]!r} is not an email address", details={"field": "email"})
    return value


def invite(*, session: Session, actor: Principal, team_id: int, email: str, role: str = "member") -> Invite:
    target = AuditTarget("team", id=team_id, team_id=_existing(session, team_id))
    with audited(session, actor, "team.invite", target):
        team = _team(session, actor, team_id, Action.team_manage)
        target.name = team.name
        wanted = _role(role)
        if wanted is TeamRole.owner:
            authorize(session, actor, team_id, Action.team_own, what=f"team {team_id}")
        address = normalize_email(email)
        settings = get_settings()
        domains = settings.allowed_domains
        # Only domains decide (no groups, not everyone): an address outside them could never sign in.
        domain_gate = settings.auth_mode is AuthMode.oidc and domains and not settings.allowed_groups
        if domain_gate and not settings.oidc_allow_any_user and address.rsplit("@", 1)[1] not in domains:
            raise ValidationFailed(
                f"{address} could not sign in: only {', '.join(domains)} addresses may",
                hint="Invite an address in an allowed domain (ENVHUB_OIDC_ALLOWED_DOMAINS).",
                details={"field": "email"},
            )
        member = session.exec(
            select(User.username)
            .join(Membership, col(Membership.user_id) == User.id)
            .where(Membership.team_id == team_id, func.lower(User.email) == address)
        ).first()
        if member is not None:
            raise Conflict(f"{address} is already a member ({member})", details={"field": "email"})
        open_invite = session.exec(
            select(Invite).where(
                Invite.team_id == team_id,
                Invite.email == address,
                col(Invite.accepted_at).is_(None),
                col(Invite.revoked_at).is_(None),
            )
        ).first()
        if open_invite is not None:
            if open_invite.expires_at > utcnow():
                raise Conflict(f"{address} is already invited", details={"field": "email"})
            open_invite.revoked_at = utcnow()  # an expired one makes way for the new one
            session.add(open_invite)
            session.flush()
        row = Invite(
            team_id=team_id,
            email=address,
            role=wanted,
            invited_by_id=actor.user_id,
            expires_at=utcnow() + timedelta(days=INVITE_DAYS),
        )
        session.add(row)
        session.flush()
        target.name = team.name
        target.team_id = team_id
        target.details = {"email": address, "role": wanted.value, "invite_id": row.id}
    return row


def revoke_invite(*, session: Session, actor: Principal, invite_id: int) -> None:
    target = AuditTarget("team")
    with audited(session, actor, "team.invite.revoke", target):
        row = session.get(Invite, invite_id)
        if row is None:
            raise NotFound(f"invitation {invite_id} was not found")
        team = _team(session, actor, row.team_id, Action.team_manage)
        target.id, target.name, target.team_id = team.id, team.name, team.id
        if row.accepted_at is not None or row.revoked_at is not None:
            raise Conflict("that invitation is no longer open")
        row.revoked_at = utcnow()
        session.add(row)
        target.id = team.id
        target.name = team.name
        target.team_id = team.id
        target.details = {"email": row.email}


def _membership(session: Session, team_id: int, user_id: int) -> Membership:
    row = session.exec(
        select(Membership).where(Membership.team_id == team_id, Membership.user_id == user_id)
    ).first()
    if row is None:
        raise NotFound(f"user {user_id} is not a member of this team")
    return row


def _owners(session: Session, team_id: int) -> int:
    return int(
        session.exec(
            select(func.count())
            .select_from(Membership)
            .where(Membership.team_id == team_id, Membership.role == TeamRole.owner)
        ).one()
    )


def change_role(*, session: Session, actor: Principal, team_id: int, user_id: int, role: str) -> Membership:
    target = AuditTarget("team", id=team_id, team_id=_existing(session, team_id))
    with audited(session, actor, "team.member.role", target):
        team = _team(session, actor, team_id, Action.team_manage)
        target.name = team.name
        wanted = _role(role)
        row = _membership(session, team_id, user_id)
        if TeamRole.owner in (row.role, wanted):
            authorize(session, actor, team_id, Action.team_own, what=f"team {team_id}")
        if row.role is TeamRole.owner and wanted is not TeamRole.owner and _owners(session, team_id) <= 1:
            raise Conflict("a team keeps at least one owner", hint="Make someone else an owner first.")
        previous = row.role
        row.role = wanted
        session.add(row)
        target.name = team.name
        target.team_id = team_id
        target.details = {"user_id": user_id, "from": previous.value, "to": wanted.value}
    return row


def remove_member(*, session: Session, actor: Principal, team_id: int, user_id: int) -> None:
    """Take someone out of the team; anyone may leave by removing themselves."""
    target = AuditTarget("team", id=team_id, team_id=_existing(session, team_id))
    with audited(session, actor, "team.member.remove", target):
        leaving = actor.user_id == user_id and actor.is_person
        team = _team(session, actor, team_id, Action.team_read if leaving else Action.team_manage)
        target.name = team.name
        row = _membership(session, team_id, user_id)
        if row.role is TeamRole.owner:
            if not leaving:
                authorize(session, actor, team_id, Action.team_own, what=f"team {team_id}")
            if _owners(session, team_id) <= 1:
                raise Conflict("a team keeps at least one owner", hint="Make someone else an owner first.")
        session.delete(row)
        target.name = team.name
        target.team_id = team_id
        target.details = {"user_id": user_id, "role": row.role.value}


def accept_invites(session: Session, user: User, *, actor: Principal) -> list[Team]:
    """Turn open invitations for the person's verified address into memberships (caller commits)."""
    if not user.email or user.id is None:
        return []
    joined = []
    now = utcnow()
    open_invites = session.exec(
        select(Invite).where(
            Invite.email == user.email.lower(),
            col(Invite.accepted_at).is_(None),
            col(Invite.revoked_at).is_(None),
            col(Invite.expires_at) > now,
        )
    )
    for row in open_invites:
        team = session.get(Team, row.team_id)
        if team is None:
            continue
        existing = session.exec(
            select(Membership).where(Membership.team_id == row.team_id, Membership.user_id == user.id)
        ).first()
        if existing is None:
            session.add(Membership(team_id=row.team_id, user_id=user.id, role=row.role))
            joined.append(team)
        row.accepted_at, row.accepted_by_id = now, user.id
        session.add(row)
        audit(
            session,
            actor,
            "team.invite.accept",
            target_type="team",
            target_id=team.id,
            target=team.name,
            team_id=team.id,
            details={"email": row.email, "role": row.role.value, "invite_id": row.id},
        )
    return joined
