"""environment trigger: what made each environment (manual, agent, pull_request, push)

Environments made before this revision were all made by hand or by an agent's
person; they are recorded as ``manual``.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 08:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("environment", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("trigger", sa.String(length=30), server_default="manual", nullable=False)
        )
        batch_op.create_index(batch_op.f("ix_environment_trigger"), ["trigger"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("environment", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_environment_trigger"))
        batch_op.drop_column("trigger")
