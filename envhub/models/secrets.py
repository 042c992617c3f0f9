"""Secrets envhub keeps for teams and projects, encrypted at rest.

``value`` is an AES-GCM envelope (``services/crypto.py``); the plain value
exists only in memory, at the moment a job hands it to an environment.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from envhub.models.base import UTCDateTime, utcnow


class StoredSecret(SQLModel, table=True):
    __tablename__ = "stored_secret"
    __table_args__ = (UniqueConstraint("team_id", "scope", "name", name="uq_stored_secret_name"),)

    id: int | None = Field(default=None, primary_key=True)
    team_id: int = Field(foreign_key="team.id", index=True, ondelete="CASCADE")
    # "project:<id>" for an environment secret of a project's environments,
    # "integration" for a team's integration credentials (e.g. a GitHub token).
    scope: str = Field(max_length=50)
    # Set for project secrets, so they go when the project goes.
    project_id: int | None = Field(default=None, foreign_key="project.id", index=True, ondelete="CASCADE")
    name: str = Field(max_length=100)
    value: str = Field(sa_column=Column(Text, nullable=False))
    created_by_id: int | None = Field(default=None, foreign_key="user_account.id", ondelete="SET NULL")
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
