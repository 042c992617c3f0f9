"""Idempotency keys: what a create made, so that a retried request makes nothing new."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from envhub.models.base import UTCDateTime, utcnow


class IdempotencyKey(SQLModel, table=True):
    __tablename__ = "idempotency_key"
    __table_args__ = (UniqueConstraint("owner", "key", name="uq_idempotency_key_owner_key"),)

    id: int | None = Field(default=None, primary_key=True)
    # Whose key: "user:<id>" (one namespace per person, whatever token they use).
    owner: str = Field(max_length=100)
    key: str = Field(max_length=255)
    # What the first request was: its operation (with the URL's ids) and a digest of its body.
    operation: str = Field(max_length=200)
    fingerprint: str = Field(max_length=64)
    # What it made. No foreign keys: the record outlives a deleted project's rows.
    environment_id: int | None = Field(default=None)
    job_run_id: int | None = Field(default=None)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False, index=True)
    )
