"""environment listing index: keyset pages of every environment, newest first

The Environments page, ``GET /api/v1/environments`` and ``envhub env ls`` list
environments across projects ordered by (created_at, id) and page by keyset on
that pair; this index serves both the order and the "after this cursor" seek.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 12:30:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("environment", schema=None) as batch_op:
        batch_op.create_index("ix_environment_created_at_id", ["created_at", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("environment", schema=None) as batch_op:
        batch_op.drop_index("ix_environment_created_at_id")
