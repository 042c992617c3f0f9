"""service backups and restores: a deployment environment's database, dumped on a schedule and restorable

``service_backup`` records each ``pg_dump`` of an environment's PostgreSQL
instance kept in the object store (size, duration, SHA-256, retention, its
last restore check); ``service_restore`` records each restore of one, into an
environment's database or into a scratch database that checks it.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 15:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("service_instance", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("seed_detail", sa.String(length=500), server_default="", nullable=False)
        )

    op.create_table(
        "service_backup",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("instance_id", sa.Integer(), nullable=False),
        sa.Column("environment_id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("service", sa.String(length=20), nullable=False),
        sa.Column("state", sa.String(length=30), nullable=False),
        sa.Column("trigger", sa.String(length=30), nullable=False),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        sa.Column("key", sa.String(length=500), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(length=2000), nullable=False),
        sa.Column("error_code", sa.String(length=100), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("check_passed", sa.Boolean(), nullable=True),
        sa.Column("check_detail", sa.String(length=500), nullable=False),
        sa.ForeignKeyConstraint(["instance_id"], ["service_instance.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["environment_id"], ["environment.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["project_id"], ["project.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("service_backup", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_service_backup_instance_id"), ["instance_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_service_backup_environment_id"), ["environment_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_service_backup_project_id"), ["project_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_service_backup_state"), ["state"], unique=False)

    op.create_table(
        "service_restore",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("backup_id", sa.Integer(), nullable=False),
        sa.Column("environment_id", sa.Integer(), nullable=False),
        sa.Column("service", sa.String(length=20), nullable=False),
        sa.Column("purpose", sa.String(length=30), nullable=False),
        sa.Column("state", sa.String(length=30), nullable=False),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        sa.Column("safety_backup_id", sa.Integer(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("detail", sa.String(length=500), nullable=False),
        sa.Column("error", sa.String(length=2000), nullable=False),
        sa.Column("error_code", sa.String(length=100), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["backup_id"], ["service_backup.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["environment_id"], ["environment.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("service_restore", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_service_restore_backup_id"), ["backup_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_service_restore_environment_id"), ["environment_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_service_restore_state"), ["state"], unique=False)


def downgrade() -> None:
    op.drop_table("service_restore")
    op.drop_table("service_backup")
    with op.batch_alter_table("service_instance", schema=None) as batch_op:
        batch_op.drop_column("seed_detail")
