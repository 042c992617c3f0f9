"""CloudNativePG backups and restores: the operator's base backups listed beside envhub's dumps

``service_backup.method`` tells envhub's ``pg_dump`` from the operator's barman
base backup, whose report (the ``Backup`` object's status) is kept in
``reference``. A restore into a CloudNativePG cluster makes its Cluster again:
``service_instance.generation`` counts those, and ``recovery`` holds where the
current generation's data came from.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 18:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("service_instance", schema=None) as batch_op:
        batch_op.add_column(sa.Column("generation", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("recovery", sa.Text(), server_default="", nullable=False))
    with op.batch_alter_table("service_backup", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("method", sa.String(length=30), server_default="pg_dump", nullable=False)
        )
        batch_op.add_column(sa.Column("reference", sa.Text(), server_default="", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("service_backup", schema=None) as batch_op:
        batch_op.drop_column("reference")
        batch_op.drop_column("method")
    with op.batch_alter_table("service_instance", schema=None) as batch_op:
        batch_op.drop_column("recovery")
        batch_op.drop_column("generation")
