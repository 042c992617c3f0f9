"""runtime conditions and image workloads

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 20:07:15.114654
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("environment", schema=None) as batch_op:
        batch_op.add_column(sa.Column("condition", sa.String(length=100), nullable=True))
        batch_op.add_column(
            sa.Column("condition_message", sa.String(length=2000), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("observed_at", sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table("project", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "services",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=False,
                server_default=sa.text("'[]'"),
            )
        )
        batch_op.add_column(sa.Column("manifests", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "quota",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=False,
                server_default=sa.text("'{}'"),
            )
        )
        batch_op.add_column(
            sa.Column(
                "egress",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=False,
                server_default=sa.text("'{}'"),
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("project", schema=None) as batch_op:
        batch_op.drop_column("egress")
        batch_op.drop_column("quota")
        batch_op.drop_column("manifests")
        batch_op.drop_column("services")

    with op.batch_alter_table("environment", schema=None) as batch_op:
        batch_op.drop_column("observed_at")
        batch_op.drop_column("condition_message")
        batch_op.drop_column("condition")
