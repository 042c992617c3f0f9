"""environment creator index: the creator filter's options without a scan

The environments list offers "created by" among the people who created a
visible environment; it asks each person whether one exists (``EXISTS`` on
``environment.created_by_id``) instead of a ``DISTINCT`` over every visible
environment, and this index answers each probe.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 01:50:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("environment", schema=None) as batch_op:
        batch_op.create_index("ix_environment_created_by_id", ["created_by_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("environment", schema=None) as batch_op:
        batch_op.drop_index("ix_environment_created_by_id")
