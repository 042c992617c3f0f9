"""AuditEvent: one row for every state-changing operation, success or failure."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, Index
from sqlmodel import Field, SQLModel

from envhub.models.base import JSONType, UTCDateTime, utcnow


class AuditEvent(SQLModel, table=True):
    __tablename__ = "audit_event"
    __table_args__ = (Index("ix_audit_event_target", "target_type", "target_id"),)

    id: int | None = Field(default=None, primary_key=True)
    time: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False, index=True))
    actor_id: int | None = Field(default=None, foreign_key="user_account.id")
    actor: str = Field(max_length=200)
    # user | system (jobs, reconciler); tokens and agents arrive with identity.
    principal_type: str = Field(default="user", max_length=20)
    action: str = Field(max_length=100, index=True)
    target_type: str = Field(max_length=50)
    target_id: int | None = Field(default=None)
    target: str = Field(default="", max_length=300)
    team_id: int | None = Field(default=None, foreign_key="team.id", index=True)
    outcome: str = Field(default="success", max_length=20)
    error_code: str | None = Field(default=None, max_length=100)
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
