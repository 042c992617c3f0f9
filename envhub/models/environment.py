"""Environments: the desired state (spec, generation) and what was last observed."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Column, Index, false, text
from sqlmodel import Field, SQLModel

from envhub.domain.phases import Phase
from envhub.domain.specs import EnvironmentKind, Trigger
from envhub.models.base import EnumText, JSONType, UTCDateTime, utcnow


class Environment(SQLModel, table=True):
    __tablename__ = "environment"
    __table_args__ = (
        # Names are unique among live environments only: a deleted one keeps its
        # row (and audit trail) without blocking the name.
        Index(
            "uq_environment_project_name_live",
            "project_id",
            "name",
            unique=True,
            sqlite_where=text("phase != 'deleted'"),
            postgresql_where=text("phase != 'deleted'"),
        ),
        # Lists across projects are ordered and paged by keyset on (created_at, id).
        Index("ix_environment_created_at_id", "created_at", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    project_id: int = Field(foreign_key="project.id", index=True)
    name: str = Field(max_length=63)
    kind: EnvironmentKind = Field(
        default=EnvironmentKind.development, sa_column=Column(EnumText(EnvironmentKind), nullable=False)
    )
    trigger: Trigger = Field(
        default=Trigger.manual,
        sa_column=Column(EnumText(Trigger), nullable=False, server_default=Trigger.manual.value, index=True),
    )
    phase: Phase = Field(default=Phase.pending, sa_column=Column(EnumText(Phase), nullable=False, index=True))
    message: str = Field(default="", max_length=2000)
    error_code: str | None = Field(default=None, max_length=100)
    spec: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
    # "present" or "absent": what the jobs converge the world to.
    desired_state: str = Field(default="present", max_length=20)
    desired_generation: int = Field(default=1)
    observed_generation: int = Field(default=0)
    # Indexed: the gateway finds the environment behind a wildcard host by it.
    public_url: str | None = Field(default=None, max_length=2000, index=True)
    # What the runtime last reported about a live environment, independent of
    # phase: e.g. "cluster_unreachable" while the cluster cannot be reached.
    condition: str | None = Field(default=None, max_length=100)
    condition_message: str = Field(default="", max_length=2000)
    # What the runtime took from the repository's devcontainer.json and what it did not
    # (domain/devcontainer.Devcontainer.summary); None: the last deploy found none.
    devcontainer: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType, nullable=True))
    observed_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    # The last sign that someone uses it (HTTP through its URL, terminal input, commands,
    # CLI/REST/MCP calls), written at most once a minute or so (services/activity.py);
    # None: none since it was created. Idle sleep and the TTL count from it (domain/idleness.py).
    last_active_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    # Pinned by a person: it neither sleeps nor expires.
    pinned: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default=false()))
    # Indexed: the list's "created by" options ask each person whether they created one.
    created_by_id: int | None = Field(default=None, foreign_key="user_account.id", index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    deleted_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
