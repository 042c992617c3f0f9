"""environment spans: hours running and asleep, with what the environment reserves while running

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 23:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "environment_span",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("environment_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=30), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cpu_millicores", sa.Integer(), nullable=True),
        sa.Column("memory_bytes", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["environment_id"], ["environment.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("environment_span", schema=None) as batch_op:
        batch_op.create_index(
            "ix_environment_span_environment_ended", ["environment_id", "ended_at"], unique=False
        )
    # Environments live now get an open span from now (what came before was not recorded); its
    # reservation stays NULL, read from the environment's spec when the figures are computed.
    op.execute(
        "INSERT INTO environment_span (environment_id, state, started_at) SELECT id, 'running', "
        "CURRENT_TIMESTAMP FROM environment WHERE phase IN ('provisioning', 'ready', 'updating')"
    )
    op.execute(
        "INSERT INTO environment_span (environment_id, state, started_at) SELECT id, 'asleep', "
        "CURRENT_TIMESTAMP FROM environment WHERE phase = 'sleeping'"
    )


def downgrade() -> None:
    with op.batch_alter_table("environment_span", schema=None) as batch_op:
        batch_op.drop_index("ix_environment_span_environment_ended")
    op.drop_table("environment_span")
