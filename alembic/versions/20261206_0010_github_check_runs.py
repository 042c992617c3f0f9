"""github check runs: a check run on each pull request's head commit

App connections report the environment as a check run ("envhub preview") on
the commit it runs, besides the comment and the Deployment; the pull request
remembers the run (id, commit, last state) so it is made once per commit and
updated only when its state changes. A connection may turn it off.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 00:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("github_connection", schema=None) as batch_op:
        batch_op.add_column(sa.Column("check_runs", sa.Boolean(), server_default=sa.true(), nullable=False))
    with op.batch_alter_table("pull_request", schema=None) as batch_op:
        batch_op.add_column(sa.Column("check_run_id", sa.BigInteger(), nullable=True))
        batch_op.add_column(
            sa.Column("check_run_sha", sa.String(length=64), server_default="", nullable=False)
        )
        batch_op.add_column(
            sa.Column("check_run_state", sa.String(length=20), server_default="", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("pull_request", schema=None) as batch_op:
        batch_op.drop_column("check_run_state")
        batch_op.drop_column("check_run_sha")
        batch_op.drop_column("check_run_id")
    with op.batch_alter_table("github_connection", schema=None) as batch_op:
        batch_op.drop_column("check_runs")
