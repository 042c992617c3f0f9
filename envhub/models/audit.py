"""AuditEvent: one row for every operation, success or failure, in a hash chain.

Rows are append-only. Each carries its position ``seq``, the MAC of the row
before it (``prev_hash``) and its own (``hash``), computed by
``models/audit_chain.py`` at commit; ``AuditChainHead`` seals the end of the
chain. ``services/audit_chain.py`` verifies it and keeps each check's result
in ``AuditChainCheck``; an intact result is the checkpoint the next
incremental check starts from.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from envhub.models.base import JSONType, UTCDateTime, utcnow


class AuditEvent(SQLModel, table=True):
    __tablename__ = "audit_event"
    __table_args__ = (
        Index("ix_audit_event_target", "target_type", "target_id"),
        UniqueConstraint("seq", name="uq_audit_event_seq"),
    )

    id: int | None = Field(default=None, primary_key=True)
    # Position in the chain; NULL only for rows written before the chain existed
    # until the launcher seals them (see services/audit_chain.seal_legacy_rows).
    seq: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    time: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False, index=True))
    actor_id: int | None = Field(default=None, foreign_key="user_account.id")
    actor: str = Field(max_length=200, index=True)
    # user | token | agent | system
    principal_type: str = Field(default="user", max_length=20)
    token_id: int | None = Field(default=None)  # the token that acted, for token and agent principals
    action: str = Field(max_length=100, index=True)
    target_type: str = Field(max_length=50)
    target_id: int | None = Field(default=None)
    target: str = Field(default="", max_length=300)
    team_id: int | None = Field(default=None, foreign_key="team.id", index=True)
    outcome: str = Field(default="success", max_length=20)
    error_code: str | None = Field(default=None, max_length=100)
    source_ip: str | None = Field(default=None, max_length=64)
    user_agent: str | None = Field(default=None, max_length=300)
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
    prev_hash: str | None = Field(default=None, max_length=64)
    hash: str | None = Field(default=None, max_length=64)


class AuditChainHead(SQLModel, table=True):
    """The last link of the chain (a single row, id 1), locked by every append."""

    __tablename__ = "audit_chain_head"

    id: int | None = Field(default=None, primary_key=True)
    seq: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    last_hash: str = Field(max_length=64)
    mac: str = Field(max_length=64)
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))


class AuditChainCheck(SQLModel, table=True):
    """One check of the chain and its result; when ``ok``, a checkpoint.

    ``mac`` (domain/audit_chain.check_mac) covers every other column, the id
    included, so a result cannot be forged, edited or copied into a newer row
    without envhub's key.
    """

    __tablename__ = "audit_chain_check"

    id: int | None = Field(default=None, primary_key=True)
    mode: str = Field(max_length=20)  # full | incremental
    # The checkpoint it started after (0: the beginning) and the last event it verified.
    from_seq: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    to_seq: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    last_hash: str = Field(max_length=64)  # the MAC of event #to_seq
    checked: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    ok: bool
    problems: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSONType, nullable=False))
    checked_by: str = Field(max_length=200)
    started_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    finished_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    mac: str = Field(max_length=64)
