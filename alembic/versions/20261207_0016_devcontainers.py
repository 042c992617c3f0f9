"""devcontainers: a project's named dev container configuration, and what an environment took from its own

``project.devcontainer`` names ``.devcontainer/<name>/devcontainer.json`` (NULL:
the default places); ``environment.devcontainer`` records what the runtime
honoured from the repository's configuration and what it did not (shown on the
environment's page and in every face).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 18:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("project", schema=None) as batch_op:
        batch_op.add_column(sa.Column("devcontainer", sa.String(length=100), nullable=True))
    with op.batch_alter_table("environment", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "devcontainer",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("environment", schema=None) as batch_op:
        batch_op.drop_column("devcontainer")
    with op.batch_alter_table("project", schema=None) as batch_op:
        batch_op.drop_column("devcontainer")
