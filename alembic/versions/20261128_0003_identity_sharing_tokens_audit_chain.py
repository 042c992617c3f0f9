"""identity, sharing, tokens, audit chain and secrets

Users gain their OpenID identity; teams gain invitations; environments gain
shares; sessions, tokens, login links and device authorizations arrive;
secrets are stored encrypted; audit events get their place in a hash chain.
Audit rows written before this revision have no MAC yet: the launcher seals
them right after migrating (services/audit_chain.seal_legacy_rows), because
the MAC needs envhub's key, which a migration must not depend on.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 20:48:59.382229
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("last_hash", sa.String(length=64), nullable=False),
        sa.Column("mac", sa.String(length=64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "login_link",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["user_account.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("login_link", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_login_link_token_hash"), ["token_hash"], unique=True)

    op.create_table(
        "team_invite",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("role", sa.String(length=30), nullable=False),
        sa.Column("invited_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("accepted_by_id", sa.Integer(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["accepted_by_id"], ["user_account.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["invited_by_id"], ["user_account.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["team_id"], ["team.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("team_invite", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_team_invite_email"), ["email"], unique=False)
        batch_op.create_index(batch_op.f("ix_team_invite_team_id"), ["team_id"], unique=False)
        batch_op.create_index(
            "uq_team_invite_open",
            ["team_id", "email"],
            unique=True,
            sqlite_where=sa.text("accepted_at IS NULL AND revoked_at IS NULL"),
            postgresql_where=sa.text("accepted_at IS NULL AND revoked_at IS NULL"),
        )

    op.create_table(
        "web_session",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source_ip", sa.String(length=64), nullable=False),
        sa.Column("user_agent", sa.String(length=300), nullable=False),
        sa.Column("oidc_refresh_token", sa.Text(), nullable=True),
        sa.Column("oidc_id_token", sa.Text(), nullable=True),
        sa.Column("recheck_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["user_account.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("web_session", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_web_session_token_hash"), ["token_hash"], unique=True)
        batch_op.create_index(batch_op.f("ix_web_session_user_id"), ["user_id"], unique=False)

    op.create_table(
        "stored_secret",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.String(length=50), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["created_by_id"], ["user_account.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["project_id"], ["project.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["team_id"], ["team.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("team_id", "scope", "name", name="uq_stored_secret_name"),
    )
    with op.batch_alter_table("stored_secret", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_stored_secret_project_id"), ["project_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_stored_secret_team_id"), ["team_id"], unique=False)

    op.create_table(
        "api_token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("hint", sa.String(length=20), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("environment_id", sa.Integer(), nullable=True),
        sa.Column(
            "scopes",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_via", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_ip", sa.String(length=64), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["environment_id"], ["environment.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["user_account.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("api_token", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_token_environment_id"), ["environment_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_api_token_token_hash"), ["token_hash"], unique=True)
        batch_op.create_index(batch_op.f("ix_api_token_user_id"), ["user_id"], unique=False)

    op.create_table(
        "environment_share",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("environment_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("team_id", sa.Integer(), nullable=True),
        sa.Column("role", sa.String(length=30), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("(user_id IS NULL) != (team_id IS NULL)", name="ck_share_one_grantee"),
        sa.ForeignKeyConstraint(["created_by_id"], ["user_account.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["environment_id"], ["environment.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["team_id"], ["team.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["user_account.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("environment_id", "team_id", name="uq_share_environment_team"),
        sa.UniqueConstraint("environment_id", "user_id", name="uq_share_environment_user"),
    )
    with op.batch_alter_table("environment_share", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_environment_share_environment_id"), ["environment_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_environment_share_team_id"), ["team_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_environment_share_user_id"), ["user_id"], unique=False)

    op.create_table(
        "device_authorization",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_code_hash", sa.String(length=64), nullable=False),
        sa.Column("user_code", sa.String(length=9), nullable=False),
        sa.Column("client_id", sa.String(length=100), nullable=False),
        sa.Column(
            "scopes",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("interval", sa.Integer(), nullable=False),
        sa.Column("last_polled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("approved_by_id", sa.Integer(), nullable=True),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("denied_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("token_id", sa.Integer(), nullable=True),
        sa.Column("token_sealed", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["approved_by_id"], ["user_account.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["token_id"], ["api_token.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("device_authorization", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_device_authorization_device_code_hash"), ["device_code_hash"], unique=True
        )
        batch_op.create_index(batch_op.f("ix_device_authorization_user_code"), ["user_code"], unique=True)

    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.add_column(sa.Column("seq", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("token_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("source_ip", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("user_agent", sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column("prev_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("hash", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_audit_event_actor"), ["actor"], unique=False)
        batch_op.create_unique_constraint("uq_audit_event_seq", ["seq"])

    with op.batch_alter_table("user_account", schema=None) as batch_op:
        batch_op.add_column(sa.Column("oidc_issuer", sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column("oidc_subject", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("last_sign_in_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f("ix_user_account_email"), ["email"], unique=False)
        batch_op.create_unique_constraint("uq_user_oidc_subject", ["oidc_issuer", "oidc_subject"])


def downgrade() -> None:
    with op.batch_alter_table("user_account", schema=None) as batch_op:
        batch_op.drop_constraint("uq_user_oidc_subject", type_="unique")
        batch_op.drop_index(batch_op.f("ix_user_account_email"))
        batch_op.drop_column("last_sign_in_at")
        batch_op.drop_column("oidc_subject")
        batch_op.drop_column("oidc_issuer")

    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.drop_constraint("uq_audit_event_seq", type_="unique")
        batch_op.drop_index(batch_op.f("ix_audit_event_actor"))
        batch_op.drop_column("hash")
        batch_op.drop_column("prev_hash")
        batch_op.drop_column("user_agent")
        batch_op.drop_column("source_ip")
        batch_op.drop_column("token_id")
        batch_op.drop_column("seq")

    with op.batch_alter_table("device_authorization", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_device_authorization_user_code"))
        batch_op.drop_index(batch_op.f("ix_device_authorization_device_code_hash"))

    op.drop_table("device_authorization")
    with op.batch_alter_table("environment_share", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_environment_share_user_id"))
        batch_op.drop_index(batch_op.f("ix_environment_share_team_id"))
        batch_op.drop_index(batch_op.f("ix_environment_share_environment_id"))

    op.drop_table("environment_share")
    with op.batch_alter_table("api_token", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_token_user_id"))
        batch_op.drop_index(batch_op.f("ix_api_token_token_hash"))
        batch_op.drop_index(batch_op.f("ix_api_token_environment_id"))

    op.drop_table("api_token")
    with op.batch_alter_table("stored_secret", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_stored_secret_team_id"))
        batch_op.drop_index(batch_op.f("ix_stored_secret_project_id"))

    op.drop_table("stored_secret")
    with op.batch_alter_table("web_session", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_web_session_user_id"))
        batch_op.drop_index(batch_op.f("ix_web_session_token_hash"))

    op.drop_table("web_session")
    with op.batch_alter_table("team_invite", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_team_invite_open",
            sqlite_where=sa.text("accepted_at IS NULL AND revoked_at IS NULL"),
            postgresql_where=sa.text("accepted_at IS NULL AND revoked_at IS NULL"),
        )
        batch_op.drop_index(batch_op.f("ix_team_invite_team_id"))
        batch_op.drop_index(batch_op.f("ix_team_invite_email"))

    op.drop_table("team_invite")
    with op.batch_alter_table("login_link", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_login_link_token_hash"))

    op.drop_table("login_link")
    op.drop_table("audit_chain_head")
