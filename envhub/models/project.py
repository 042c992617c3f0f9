"""Projects: a team's application, with the defaults its environments start from."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, Integer, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from envhub.domain.idleness import DEFAULT_SLEEP_AFTER_MINUTES
from envhub.domain.specs import DEFAULT_COMMAND
from envhub.domain.url_access import UrlAccess
from envhub.models.base import JSONType, UTCDateTime, utcnow


class Project(SQLModel, table=True):
    __tablename__ = "project"
    __table_args__ = (UniqueConstraint("team_id", "name", name="uq_project_team_name"),)

    id: int | None = Field(default=None, primary_key=True)
    team_id: int = Field(foreign_key="team.id", index=True)
    name: str = Field(max_length=63)
    description: str = Field(default="", max_length=2000)
    repo_url: str | None = Field(default=None, max_length=2000)
    default_ref: str | None = Field(default=None, max_length=200)
    command: str = Field(default=DEFAULT_COMMAND, max_length=4000)
    env: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
    health_path: str = Field(default="/", max_length=500)
    # A named dev container configuration (.devcontainer/<name>/devcontainer.json); None: the default places.
    devcontainer: str | None = Field(default=None, max_length=100)
    # Image-based runtimes (Kubernetes): services, raw manifests, quota and the
    # egress allowlist every environment of the project starts from.
    services: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSONType, nullable=False))
    manifests: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    quota: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
    egress: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
    # Who may open its environments' public URLs: anyone ("public") or people
    # who may see the environment in envhub, signed in ("sign_in").
    url_access: str = Field(default=UrlAccess.public.value, max_length=20)
    # Deployment environments (domain/releases.DeploymentSettings); empty: none.
    deployments: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
    # Managed services every environment gets (domain/backing.BackingSettings); empty: none.
    backing: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSONType, nullable=False))
    # Development environments sleep after this many minutes without activity, and are
    # deleted after this many hours without it (domain/idleness.py); None: never.
    sleep_after_minutes: int | None = Field(
        default=DEFAULT_SLEEP_AFTER_MINUTES,
        sa_column=Column(Integer, nullable=True, server_default=str(DEFAULT_SLEEP_AFTER_MINUTES)),
    )
    ttl_hours: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    created_by_id: int | None = Field(default=None, foreign_key="user_account.id")
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
