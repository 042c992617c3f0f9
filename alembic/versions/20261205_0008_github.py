"""github: repository connections, webhook deliveries, followed pull requests

A project connects to its GitHub repository (an App installation or a token,
sealed like every secret); each webhook delivery is recorded by its delivery
id before any work, so a redelivery does nothing twice; pull requests envhub
follows keep their head commit, environment, comment and deployment.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 16:16:54.306132
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "webhook_delivery",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("delivery_id", sa.String(length=100), nullable=False),
        sa.Column("body_digest", sa.String(length=64), nullable=False),
        sa.Column("event", sa.String(length=50), nullable=False),
        sa.Column("action", sa.String(length=50), nullable=False),
        sa.Column("repository", sa.String(length=200), nullable=False),
        sa.Column(
            "connection_ids",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "summary",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("message", sa.String(length=2000), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("body_digest"),
        sa.UniqueConstraint("delivery_id"),
    )
    with op.batch_alter_table("webhook_delivery", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_webhook_delivery_received_at"), ["received_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_webhook_delivery_state"), ["state"], unique=False)

    op.create_table(
        "github_connection",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("repository", sa.String(length=200), nullable=False),
        sa.Column("api_url", sa.String(length=500), nullable=False),
        sa.Column("auth", sa.String(length=10), nullable=False),
        sa.Column("app_id", sa.BigInteger(), nullable=True),
        sa.Column("installation_id", sa.BigInteger(), nullable=True),
        sa.Column("credential", sa.Text(), nullable=False),
        sa.Column("webhook_secret", sa.Text(), nullable=False),
        sa.Column("pull_requests", sa.Boolean(), nullable=False),
        sa.Column("drafts", sa.Boolean(), nullable=False),
        sa.Column("opt_in_label", sa.String(length=100), nullable=True),
        sa.Column("opt_out_label", sa.String(length=100), nullable=False),
        sa.Column(
            "push_branches",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=2000), nullable=False),
        sa.Column("pulls_checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["created_by_id"], ["user_account.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["project_id"], ["project.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("project_id"),
    )
    with op.batch_alter_table("github_connection", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_github_connection_repository"), ["repository"], unique=False)

    op.create_table(
        "pull_request",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=500), nullable=False),
        sa.Column("author", sa.String(length=100), nullable=False),
        sa.Column("html_url", sa.String(length=2000), nullable=False),
        sa.Column("head_ref", sa.String(length=255), nullable=False),
        sa.Column("head_sha", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("merged", sa.Boolean(), nullable=False),
        sa.Column("draft", sa.Boolean(), nullable=False),
        sa.Column(
            "labels",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("environment_id", sa.Integer(), nullable=True),
        sa.Column("skipped", sa.String(length=500), nullable=False),
        sa.Column("comment_id", sa.BigInteger(), nullable=True),
        sa.Column("comment_body_digest", sa.String(length=64), nullable=False),
        sa.Column("deployment_id", sa.BigInteger(), nullable=True),
        sa.Column("deployment_sha", sa.String(length=64), nullable=False),
        sa.Column("deployment_state", sa.String(length=20), nullable=False),
        sa.Column("sync_due", sa.Boolean(), nullable=False),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("event_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["environment_id"], ["environment.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["project_id"], ["project.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("project_id", "number", name="uq_pull_request_project_number"),
    )
    with op.batch_alter_table("pull_request", schema=None) as batch_op:
        batch_op.create_index("ix_pull_request_open", ["project_id", "state"], unique=False)
        batch_op.create_index(batch_op.f("ix_pull_request_sync_due"), ["sync_due"], unique=False)
        batch_op.create_index(batch_op.f("ix_pull_request_environment_id"), ["environment_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("pull_request", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pull_request_environment_id"))
        batch_op.drop_index(batch_op.f("ix_pull_request_sync_due"))
        batch_op.drop_index("ix_pull_request_open")

    op.drop_table("pull_request")
    with op.batch_alter_table("github_connection", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_github_connection_repository"))

    op.drop_table("github_connection")
    with op.batch_alter_table("webhook_delivery", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_delivery_state"))
        batch_op.drop_index(batch_op.f("ix_webhook_delivery_received_at"))

    op.drop_table("webhook_delivery")
