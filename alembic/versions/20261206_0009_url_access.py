"""url access: a project chooses whether its public URLs need envhub sign-in

``project.url_access`` is ``public`` (anyone with the URL; what every project
had so far) or ``sign_in``. ``environment.public_url`` is indexed: the
gateway finds the environment behind an Ingress or tunnel host by it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 00:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("project", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("url_access", sa.String(length=20), nullable=False, server_default="public")
        )
    with op.batch_alter_table("environment", schema=None) as batch_op:
        batch_op.create_index("ix_environment_public_url", ["public_url"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("environment", schema=None) as batch_op:
        batch_op.drop_index("ix_environment_public_url")
    with op.batch_alter_table("project", schema=None) as batch_op:
        batch_op.drop_column("url_access")
