"""service instances: a project's managed services and each environment's instance of them

``project.backing`` lists the services every environment of the project gets
(PostgreSQL, Redis, a bucket); ``service_instance`` records, per environment,
what envhub made for each, on which backend, and the sealed credential the
environment was given.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 12:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("project", schema=None) as batch_op:
        batch_op.add_column(sa.Column("backing", _json(), server_default="[]", nullable=False))

    op.create_table(
        "service_instance",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("environment_id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("service", sa.String(length=20), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("backend", sa.String(length=40), nullable=False),
        sa.Column("state", sa.String(length=30), nullable=False),
        sa.Column("reason", sa.String(length=1000), nullable=False),
        sa.Column("error_code", sa.String(length=100), nullable=True),
        sa.Column("credential", sa.Text(), server_default="", nullable=False),
        sa.Column("credential_set_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["environment_id"], ["environment.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["project_id"], ["project.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("environment_id", "service", name="uq_service_instance_environment_service"),
    )
    with op.batch_alter_table("service_instance", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_service_instance_environment_id"), ["environment_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_service_instance_project_id"), ["project_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_service_instance_state"), ["state"], unique=False)


def downgrade() -> None:
    op.drop_table("service_instance")
    with op.batch_alter_table("project", schema=None) as batch_op:
        batch_op.drop_column("backing")
