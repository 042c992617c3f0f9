"""People: the local user of single-user mode, and people who sign in with OpenID.

A person signing in with OpenID Connect is found by (issuer, subject), created
on first sign-in, and kept up to date (email, name) at every sign-in. The first
such person becomes an owner of the first team (``ENVHUB_FIRST_TEAM``), which
is also where the local user's work lives when an embedded envhub is switched
to OpenID Connect.
"""

from __future__ import annotations

import re

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from envhub.config import get_settings
from envhub.domain.naming import validate_label
from envhub.domain.principals import Principal
from envhub.errors import EnvhubError, PermissionDenied
from envhub.integrations.oidc import Identity
from envhub.models import Membership, Role, Team, User
from envhub.models.base import utcnow
from envhub.services.common import audit

LOCAL_USERNAME = "local"
DEFAULT_TEAM = "default"


def principal_of(user: User) -> Principal:
    assert user.id is not None
    return Principal(name=user.username, user_id=user.id)


def ensure_local_principal(session: Session) -> Principal:
    """The single local user, owner of the default team; created on first use."""
    user = session.exec(select(User).where(User.username == LOCAL_USERNAME)).first()
    if user is None:
        try:
            user = User(username=LOCAL_USERNAME, display_name="Local user")
            team = session.exec(select(Team).where(Team.name == DEFAULT_TEAM)).first()
            if team is None:
                team = Team(name=DEFAULT_TEAM, display_name="Default team")
                session.add(team)
            session.add(user)
            session.flush()
            assert team.id is not None
            assert user.id is not None
            session.add(Membership(team_id=team.id, user_id=user.id, role=Role.owner))
            session.commit()
        except IntegrityError:  # another process created it at the same moment
            session.rollback()
            user = session.exec(select(User).where(User.username == LOCAL_USERNAME)).one()
    return principal_of(user)


def default_team_id(session: Session, principal: Principal) -> int:
    """The first team the principal belongs to (where new projects go by default)."""
    row = session.exec(
        select(Membership.team_id).where(Membership.user_id == principal.user_id).order_by(col(Membership.id))
    ).first()
    if row is None:
        raise PermissionDenied(
            "you are not a member of any team",
            hint="Ask a team's owner or admin to invite your email address, or create a team.",
        )
    return row


def _username_base(identity: Identity) -> str:
    candidate = identity.preferred_username or identity.email.split("@", 1)[0] or "user"
    cleaned = re.sub(r"[^a-z0-9._-]+", "-", candidate.lower()).strip("-._")[:60]
    return cleaned if cleaned and cleaned != LOCAL_USERNAME else "user"


def _free_username(session: Session, base: str) -> str:
    taken = set(session.exec(select(User.username).where(col(User.username).like(f"{base}%"))))
    if base not in taken:
        return base
    number = 2
    while f"{base}-{number}" in taken:
        number += 1
    return f"{base}-{number}"


def provision_user(session: Session, identity: Identity) -> tuple[User, bool]:
    """Find or create the person; returns (user, created). Caller commits."""
    user = session.exec(
        select(User).where(User.oidc_issuer == identity.issuer, User.oidc_subject == identity.subject)
    ).first()
    created = user is None
    if user is None:
        user = User(
            username=_free_username(session, _username_base(identity)),
            oidc_issuer=identity.issuer,
            oidc_subject=identity.subject,
        )
    if identity.email and identity.email_verified:
        user.email = identity.email
    user.display_name = (identity.name or user.display_name or user.username)[:200]
    user.last_sign_in_at = utcnow()
    session.add(user)
    session.flush()
    return user, created


def bootstrap_first_team(session: Session, user: User) -> Team | None:
    """Make the first person who signs in an owner of the first team (caller commits).

    Serialized on the team's row (inserted if missing, then locked), so two
    people signing in at the same moment cannot both be "first".
    """
    name = get_settings().first_team
    try:
        validate_label(name, field="ENVHUB_FIRST_TEAM")
    except EnvhubError:
        name = DEFAULT_TEAM
    values = {"name": name, "display_name": name.replace("-", " ").title(), "created_at": utcnow()}
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.exec(insert(Team).values(**values).on_conflict_do_nothing(index_elements=["name"]))
    team = session.exec(select(Team).where(Team.name == name).with_for_update()).one()
    others = session.exec(
        select(User.id).where(col(User.oidc_subject).is_not(None), col(User.id) != user.id).limit(1)
    ).first()
    if others is not None:
        return None
    assert team.id is not None
    assert user.id is not None
    if session.exec(
        select(Membership).where(Membership.team_id == team.id, Membership.user_id == user.id)
    ).first():
        return team
    session.add(Membership(team_id=team.id, user_id=user.id, role=Role.owner))
    audit(
        session,
        principal_of(user),
        "team.bootstrap",
        target_type="team",
        target_id=team.id,
        target=team.name,
        team_id=team.id,
        details={"role": "owner", "reason": "first person to sign in"},
    )
    return team
