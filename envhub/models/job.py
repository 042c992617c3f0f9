"""JobRun: one attempt at converging an environment, with its progress steps."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Column
from sqlmodel import Field, SQLModel

from envhub.models.base import EnumText, JSONType, UTCDateTime, utcnow


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    # Superseded by a newer run, or its worker was lost and it was re-driven.
    abandoned = "abandoned"


ACTIVE_JOB_STATUSES = (JobStatus.queued, JobStatus.running)


class JobRun(SQLModel, table=True):
    __tablename__ = "job_run"

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=50, index=True)
    environment_id: int | None = Field(
        default=None, foreign_key="environment.id", index=True, ondelete="CASCADE"
    )
    status: JobStatus = Field(
        default=JobStatus.queued, sa_column=Column(EnumText(JobStatus), nullable=False, index=True)
    )
    generation: int = Field(default=0)
    attempts: int = Field(default=0)
    rq_job_id: str | None = Field(default=None, max_length=100)
    error_code: str | None = Field(default=None, max_length=100)
    error: str | None = Field(default=None, max_length=4000)
    steps: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSONType, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    enqueued_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    started_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    # A run waiting to be retried (the runtime said "not yet") is queued again
    # by the reconciler once this time has passed.
    retry_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    heartbeat_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    finished_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
