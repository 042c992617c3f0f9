"""Managed services: one environment's instance of a service its project declares (``project.backing``).

A row per (environment, declared service): what envhub made for it, on which
backend, and the credential the environment was given (sealed with AES-GCM,
``services/crypto.py``; opened only by the job that hands it over). The row is
the desired state: jobs converge the backend to it and remove the instance
when the environment goes.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from envhub.models.base import EnumText, UTCDateTime, utcnow


class InstanceState(StrEnum):
    provisioning = "provisioning"  # recorded; the backend may not have it yet
    ready = "ready"  # the backend has it and the environment was given its variables
    skipped = "skipped"  # the environment's own workloads bring this service (``reason`` says how)
    failed = "failed"  # the last attempt failed (``reason``, ``error_code``); retried with the environment
    removed = "removed"  # the environment is gone and so is the instance


class ServiceInstance(SQLModel, table=True):
    __tablename__ = "service_instance"
    __table_args__ = (
        UniqueConstraint("environment_id", "service", name="uq_service_instance_environment_service"),
    )

    id: int | None = Field(default=None, primary_key=True)
    environment_id: int = Field(foreign_key="environment.id", index=True, ondelete="CASCADE")
    project_id: int = Field(foreign_key="project.id", index=True, ondelete="CASCADE")
    service: str = Field(max_length=20)
    kind: str = Field(max_length=20)
    # The backend that holds it ("embedded", "server", "s3"); "" until provisioned.
    backend: str = Field(default="", max_length=40)
    state: InstanceState = Field(
        default=InstanceState.provisioning,
        sa_column=Column(EnumText(InstanceState), nullable=False, index=True),
    )
    reason: str = Field(default="", max_length=1000)
    error_code: str | None = Field(default=None, max_length=100)
    # The sealed credential: a password, or a bucket's key pair as JSON. "" before the first.
    credential: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    credential_set_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    removed_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
