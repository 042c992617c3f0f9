"""Releases of deployment environments: rendered artifacts, releases, approvals.

An :class:`Artifact` is one rendering of a project's source at one commit for
every deployment environment (their objects side by side), immutable once
rendered. A :class:`Release` lands one artifact in one environment; its
content never changes, only its outcome (status, message, gate results). A
rollback or a promotion is a new release of an existing artifact.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from envhub.domain.releases import ArtifactStatus, ReleaseStatus, ReleaseTrigger
from envhub.models.base import EnumText, JSONType, UTCDateTime, utcnow


class Artifact(SQLModel, table=True):
    __tablename__ = "release_artifact"
    __table_args__ = (UniqueConstraint("project_id", "key", name="uq_release_artifact_project_key"),)

    id: int | None = Field(default=None, primary_key=True)
    project_id: int = Field(foreign_key="project.id", index=True, ondelete="CASCADE")
    # What made it, so the same trigger never renders twice (commit:<sha>, api:<key>).
    key: str = Field(max_length=200)
    commit_sha: str = Field(max_length=64)
    ref: str = Field(default="", max_length=255)
    status: ArtifactStatus = Field(
        default=ArtifactStatus.rendering,
        sa_column=Column(EnumText(ArtifactStatus), nullable=False, index=True),
    )
    error: str = Field(default="", max_length=4000)
    error_code: str | None = Field(default=None, max_length=100)
    # The source as configured at the time (kind, path, chart, values files, values).
    source: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
    # Chart name, version, digest and the helm version that rendered it (Helm sources).
    chart: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
    # {image name: sha256 digest} CI asked for; every image the objects run is in ``rendered``.
    images: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
    # {environment name: canonical YAML of its objects}; {environment name: digest}.
    rendered: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
    digests: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
    # Per environment: the spec the runtime applies (services, command, overrides).
    specs: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
    notes: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    attempts: int = Field(default=0)
    enqueued_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    rendered_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))


class Release(SQLModel, table=True):
    __tablename__ = "release"
    __table_args__ = (
        UniqueConstraint("environment_id", "number", name="uq_release_environment_number"),
        # One release per trigger and environment: a replayed trigger finds it.
        UniqueConstraint("environment_id", "key", name="uq_release_environment_key"),
    )

    id: int | None = Field(default=None, primary_key=True)
    project_id: int = Field(foreign_key="project.id", index=True, ondelete="CASCADE")
    environment_id: int = Field(foreign_key="environment.id", index=True, ondelete="CASCADE")
    number: int  # 1, 2, 3 ... per environment
    key: str = Field(max_length=200)
    artifact_id: int = Field(foreign_key="release_artifact.id", index=True)
    trigger: ReleaseTrigger = Field(sa_column=Column(EnumText(ReleaseTrigger), nullable=False))
    triggered_by: str = Field(default="", max_length=200)  # a person's or token's name, or "github"
    triggered_by_user_id: int | None = Field(default=None, foreign_key="user_account.id", ondelete="SET NULL")
    # Promotion: the release of the earlier environment; rollback: the release whose content it repeats.
    source_release_id: int | None = Field(default=None, foreign_key="release.id", ondelete="SET NULL")
    status: ReleaseStatus = Field(
        default=ReleaseStatus.rendering, sa_column=Column(EnumText(ReleaseStatus), nullable=False, index=True)
    )
    message: str = Field(default="", max_length=4000)
    error_code: str | None = Field(default=None, max_length=100)
    # The last evaluation of approvals and gates: [{"gate", "passed", "reason"}].
    gates: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSONType, nullable=False))
    # The workloads that rolled out, or those that did not: [{"workload", "reason", "message"}].
    workloads: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSONType, nullable=False))
    # Container restarts in the environment when it became ready (the soak gate counts from there).
    restarts_at_ready: int = Field(default=0)
    # The environment generation that applies it (set when it starts deploying).
    generation: int | None = Field(default=None)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    started_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    finished_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    checked_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))


class Approval(SQLModel, table=True):
    __tablename__ = "release_approval"
    __table_args__ = (UniqueConstraint("release_id", "user_id", name="uq_release_approval_release_user"),)

    id: int | None = Field(default=None, primary_key=True)
    release_id: int = Field(foreign_key="release.id", index=True, ondelete="CASCADE")
    user_id: int = Field(foreign_key="user_account.id", ondelete="CASCADE")
    name: str = Field(max_length=200)
    comment: str = Field(default="", max_length=2000)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
