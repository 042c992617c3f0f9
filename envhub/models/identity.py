"""People, the teams they belong to, and invitations to join a team."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from envhub.domain.policy import TeamRole
from envhub.models.base import EnumText, UTCDateTime, utcnow

# The name the tables and older code use for a team role.
Role = TeamRole


class Team(SQLModel, table=True):
    __tablename__ = "team"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=63, unique=True, index=True)
    display_name: str = Field(default="", max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))


class User(SQLModel, table=True):
    __tablename__ = "user_account"
    # A person is who the provider says (issuer + subject), not an email
    # address: addresses get reassigned, subjects do not.
    __table_args__ = (UniqueConstraint("oidc_issuer", "oidc_subject", name="uq_user_oidc_subject"),)

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=100, unique=True, index=True)
    email: str = Field(default="", max_length=320, index=True)
    display_name: str = Field(default="", max_length=200)
    oidc_issuer: str | None = Field(default=None, max_length=500)
    oidc_subject: str | None = Field(default=None, max_length=255)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    last_sign_in_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))


class Membership(SQLModel, table=True):
    __tablename__ = "membership"
    __table_args__ = (UniqueConstraint("team_id", "user_id", name="uq_membership_team_user"),)

    id: int | None = Field(default=None, primary_key=True)
    team_id: int = Field(foreign_key="team.id", index=True, ondelete="CASCADE")
    user_id: int = Field(foreign_key="user_account.id", index=True, ondelete="CASCADE")
    role: Role = Field(default=Role.member, sa_column=Column(EnumText(Role), nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))


class Invite(SQLModel, table=True):
    """An email address invited into a team; accepted when that address signs in."""

    __tablename__ = "team_invite"
    __table_args__ = (
        # One open invitation per address and team; accepted or revoked ones stay as history.
        Index(
            "uq_team_invite_open",
            "team_id",
            "email",
            unique=True,
            sqlite_where=text("accepted_at IS NULL AND revoked_at IS NULL"),
            postgresql_where=text("accepted_at IS NULL AND revoked_at IS NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    team_id: int = Field(foreign_key="team.id", index=True, ondelete="CASCADE")
    email: str = Field(max_length=320, index=True)  # lower-cased
    role: Role = Field(default=Role.member, sa_column=Column(EnumText(Role), nullable=False))
    invited_by_id: int | None = Field(default=None, foreign_key="user_account.id", ondelete="SET NULL")
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    accepted_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    accepted_by_id: int | None = Field(default=None, foreign_key="user_account.id", ondelete="SET NULL")
    revoked_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
