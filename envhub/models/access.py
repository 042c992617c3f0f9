"""How callers prove who they are: browser sessions, tokens, login links, device codes.

Only digests of the secrets are stored (see :mod:`envhub.domain.credentials`);
the provider's refresh and ID tokens are encrypted (``services/crypto.py``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Text
from sqlmodel import Field, SQLModel

from envhub.models.base import JSONType, UTCDateTime, utcnow


class WebSession(SQLModel, table=True):
    __tablename__ = "web_session"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    user_id: int = Field(foreign_key="user_account.id", index=True, ondelete="CASCADE")
    method: str = Field(max_length=20)  # local | oidc
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    last_seen_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    source_ip: str = Field(default="", max_length=64)
    user_agent: str = Field(default="", max_length=300)
    # OpenID Connect: encrypted refresh and ID tokens, and when to re-check the person.
    oidc_refresh_token: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    oidc_id_token: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    recheck_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    revoked_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))


class ApiToken(SQLModel, table=True):
    """A personal access token, or an agent token confined to one environment."""

    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    hint: str = Field(max_length=20)
    kind: str = Field(max_length=20)  # personal | agent
    name: str = Field(max_length=100)
    user_id: int = Field(foreign_key="user_account.id", index=True, ondelete="CASCADE")
    environment_id: int | None = Field(
        default=None, foreign_key="environment.id", index=True, ondelete="CASCADE"
    )
    scopes: list[str] = Field(default_factory=list, sa_column=Column(JSONType, nullable=False))
    created_via: str = Field(default="web", max_length=20)  # web | api | device
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    last_used_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    last_used_ip: str = Field(default="", max_length=64)
    revoked_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))


class LoginLink(SQLModel, table=True):
    """A one-time sign-in link for local mode (printed by ``make run``)."""

    __tablename__ = "login_link"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    user_id: int = Field(foreign_key="user_account.id", ondelete="CASCADE")
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    used_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))


class DeviceAuthorization(SQLModel, table=True):
    """An OAuth 2.0 device authorization (RFC 8628) waiting for a person to confirm it."""

    __tablename__ = "device_authorization"

    id: int | None = Field(default=None, primary_key=True)
    device_code_hash: str = Field(max_length=64, unique=True, index=True)
    user_code: str = Field(max_length=9, unique=True, index=True)
    client_id: str = Field(max_length=100)
    scopes: list[str] = Field(default_factory=list, sa_column=Column(JSONType, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    interval: int = Field(default=5)
    last_polled_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    approved_by_id: int | None = Field(default=None, foreign_key="user_account.id", ondelete="CASCADE")
    approved_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    denied_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    token_id: int | None = Field(default=None, foreign_key="api_token.id", ondelete="SET NULL")
    # The token itself, encrypted, until the device collects it (then cleared).
    token_sealed: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
