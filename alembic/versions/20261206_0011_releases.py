"""releases: deployment environments, their rendered artifacts, releases and approvals

A project may declare deployment environments (``project.deployments``). A
merge or a CI call renders its source once for all of them (an artifact); a
release lands one artifact in one environment, after the approvals and gates
the environment asks for.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 03:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("project", schema=None) as batch_op:
        batch_op.add_column(sa.Column("deployments", _json(), server_default="{}", nullable=False))

    op.create_table(
        "release_artifact",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("commit_sha", sa.String(length=64), nullable=False),
        sa.Column("ref", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=30), nullable=False),
        sa.Column("error", sa.String(length=4000), nullable=False),
        sa.Column("error_code", sa.String(length=100), nullable=True),
        sa.Column("source", _json(), nullable=False),
        sa.Column("chart", _json(), nullable=False),
        sa.Column("images", _json(), nullable=False),
        sa.Column("rendered", _json(), nullable=False),
        sa.Column("digests", _json(), nullable=False),
        sa.Column("specs", _json(), nullable=False),
        sa.Column("notes", sa.Text(), server_default="", nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rendered_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["project_id"], ["project.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("project_id", "key", name="uq_release_artifact_project_key"),
    )
    with op.batch_alter_table("release_artifact", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_release_artifact_project_id"), ["project_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_release_artifact_status"), ["status"], unique=False)

    op.create_table(
        "release",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("environment_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("artifact_id", sa.Integer(), nullable=False),
        sa.Column("trigger", sa.String(length=30), nullable=False),
        sa.Column("triggered_by", sa.String(length=200), nullable=False),
        sa.Column("triggered_by_user_id", sa.Integer(), nullable=True),
        sa.Column("source_release_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=30), nullable=False),
        sa.Column("message", sa.String(length=4000), nullable=False),
        sa.Column("error_code", sa.String(length=100), nullable=True),
        sa.Column("gates", _json(), nullable=False),
        sa.Column("workloads", _json(), nullable=False),
        sa.Column("restarts_at_ready", sa.Integer(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["artifact_id"], ["release_artifact.id"]),
        sa.ForeignKeyConstraint(["environment_id"], ["environment.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["project_id"], ["project.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["source_release_id"], ["release.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["triggered_by_user_id"], ["user_account.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("environment_id", "key", name="uq_release_environment_key"),
        sa.UniqueConstraint("environment_id", "number", name="uq_release_environment_number"),
    )
    with op.batch_alter_table("release", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_release_artifact_id"), ["artifact_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_release_environment_id"), ["environment_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_release_project_id"), ["project_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_release_status"), ["status"], unique=False)

    op.create_table(
        "release_approval",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("release_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("comment", sa.String(length=2000), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["release_id"], ["release.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["user_account.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("release_id", "user_id", name="uq_release_approval_release_user"),
    )
    with op.batch_alter_table("release_approval", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_release_approval_release_id"), ["release_id"], unique=False)


def downgrade() -> None:
    op.drop_table("release_approval")
    op.drop_table("release")
    op.drop_table("release_artifact")
    with op.batch_alter_table("project", schema=None) as batch_op:
        batch_op.drop_column("deployments")
