"""Who is acting. In the embedded single-user mode that is always the local user.

Sign-in with OpenID Connect, invitations and tokens build on this module.
"""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from envhub.domain.principals import Principal
from envhub.models import Membership, Role, Team, User

LOCAL_USERNAME = "local"
DEFAULT_TEAM = "default"


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
    assert user.id is not None
    return Principal(name=user.username, user_id=user.id)


def default_team_id(session: Session, principal: Principal) -> int:
    """The first team the principal belongs to (where new projects go by default)."""
    row = session.exec(
        select(Membership.team_id).where(Membership.user_id == principal.user_id).order_by(col(Membership.id))
    ).first()
    if row is None:
        from envhub.errors import PermissionDenied

        raise PermissionDenied("you are not a member of any team")
    return row
