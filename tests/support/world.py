"""People and teams for service, API and job tests.

Team ``acme`` has one person per role; ``globex`` is another team whose owner
(``otto``) is a member of nothing in acme.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session

from envhub.domain.principals import Principal
from envhub.models import Membership, Role, Team, User


@dataclass(frozen=True)
class World:
    acme: int
    globex: int
    owner: Principal
    admin: Principal
    member: Principal
    viewer: Principal
    outsider: Principal
    nobody: Principal  # a user in no team at all


def _person(session: Session, username: str) -> Principal:
    user = User(username=username, display_name=username.title())
    session.add(user)
    session.flush()
    assert user.id is not None
    return Principal(name=username, user_id=user.id)


def make_world(session: Session) -> World:
    acme, globex = Team(name="acme", display_name="Acme"), Team(name="globex", display_name="Globex")
    session.add(acme)
    session.add(globex)
    session.flush()
    assert acme.id is not None
    assert globex.id is not None
    people = {name: _person(session, name) for name in ("olivia", "adam", "max", "vera", "otto", "nina")}
    for name, team, role in (
        ("olivia", acme.id, Role.owner),
        ("adam", acme.id, Role.admin),
        ("max", acme.id, Role.member),
        ("vera", acme.id, Role.viewer),
        ("otto", globex.id, Role.owner),
    ):
        user_id = people[name].user_id
        assert user_id is not None
        session.add(Membership(team_id=team, user_id=user_id, role=role))
    session.commit()
    return World(
        acme=acme.id,
        globex=globex.id,
        owner=people["olivia"],
        admin=people["adam"],
        member=people["max"],
        viewer=people["vera"],
        outsider=people["otto"],
        nobody=people["nina"],
    )
