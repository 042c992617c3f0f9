"""Environment shares: access to one environment for a user or a whole team."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from envhub.domain.policy import ShareRole
from envhub.models.base import EnumText, UTCDateTime, utcnow


class EnvironmentShare(SQLModel, table=True):
    __tablename__ = "environment_share"
    __table_args__ = (
        UniqueConstraint("environment_id", "user_id", name="uq_share_environment_user"),
        UniqueConstraint("environment_id", "team_id", name="uq_share_environment_team"),
        CheckConstraint("(user_id IS NULL) != (team_id IS NULL)", name="ck_share_one_grantee"),
    )

    id: int | None = Field(default=None, primary_key=True)
    environment_id: int = Field(foreign_key="environment.id", index=True, ondelete="CASCADE")
    user_id: int | None = Field(default=None, foreign_key="user_account.id", index=True, ondelete="CASCADE")
    team_id: int | None = Field(default=None, foreign_key="team.id", index=True, ondelete="CASCADE")
    role: ShareRole = Field(sa_column=Column(EnumText(ShareRole), nullable=False))
    # A share past this moment grants nothing; it lapses by itself.
    expires_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    created_by_id: int | None = Field(default=None, foreign_key="user_account.id", ondelete="SET NULL")
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
