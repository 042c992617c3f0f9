"""idle sleep, wake and TTL: an environment's last activity and pin, a project's sleep and TTL settings

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 21:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("environment", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_active_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("pinned", sa.Boolean(), server_default=sa.false(), nullable=False))
    with op.batch_alter_table("project", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("sleep_after_minutes", sa.Integer(), server_default="120", nullable=True)
        )
        batch_op.add_column(sa.Column("ttl_hours", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("project", schema=None) as batch_op:
        batch_op.drop_column("ttl_hours")
        batch_op.drop_column("sleep_after_minutes")
    with op.batch_alter_table("environment", schema=None) as batch_op:
        batch_op.drop_column("pinned")
        batch_op.drop_column("last_active_at")
