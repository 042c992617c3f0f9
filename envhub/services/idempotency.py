"""Idempotency keys: a create sent twice (a retry after a lost answer) makes one thing.

A client names its request with an ``Idempotency-Key``. The first request
with a key records it in the same transaction as what it created, so either
both exist or neither does; a later request with the same key and the same
body is answered with what the first one made, and one with the same key but
another body is refused (``idempotency_key_reused``): the key would otherwise
silently drop a request the client meant. Keys belong to a person (whatever
token they send) and are forgotten after :data:`KEEP`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete
from sqlmodel import Session, col, select

from envhub.domain.principals import Principal
from envhub.errors import IdempotencyKeyReused, ValidationFailed
from envhub.models import IdempotencyKey
from envhub.models.base import utcnow

KEEP = timedelta(hours=24)
MAX_KEY = 255


@dataclass(frozen=True, slots=True)
class Claim:
    """One request's key: whose, which operation (with the ids it acts on), and its body's digest."""

    owner: str
    key: str
    operation: str
    fingerprint: str


@dataclass(frozen=True, slots=True)
class Made:
    """What the first request with a key created."""

    environment_id: int | None
    job_run_id: int | None


def claim(actor: Principal, key: str, operation: str, body: Any) -> Claim:
    """The claim of ``actor``'s request; ``body`` is its parsed JSON (compared canonically)."""
    if not key or len(key) > MAX_KEY or not key.isprintable():
        raise ValidationFailed(
            f"Idempotency-Key must be 1-{MAX_KEY} printable characters",
            details={"field": "Idempotency-Key"},
        )
    owner = f"user:{actor.user_id}" if actor.user_id is not None else f"principal:{actor.name}"
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    fingerprint = hashlib.sha256(f"{operation}\n{canonical}".encode()).hexdigest()
    return Claim(owner=owner, key=key, operation=operation, fingerprint=fingerprint)


def replay(session: Session, claim: Claim) -> Made | None:
    """What an earlier request with this key made, or None if it is new (or forgotten).

    Forgets the owner's expired keys on the way, so the table holds a day of each person's creates.
    """
    session.exec(
        delete(IdempotencyKey).where(
            col(IdempotencyKey.owner) == claim.owner, col(IdempotencyKey.created_at) < utcnow() - KEEP
        )
    )
    row = session.exec(
        select(IdempotencyKey).where(IdempotencyKey.owner == claim.owner, IdempotencyKey.key == claim.key)
    ).first()
    if row is None:
        return None
    if row.operation != claim.operation or row.fingerprint != claim.fingerprint:
        raise IdempotencyKeyReused(
            "this Idempotency-Key was used for another request",
            details={"field": "Idempotency-Key"},
        )
    return Made(environment_id=row.environment_id, job_run_id=row.job_run_id)


def remember(session: Session, claim: Claim, made: Made) -> None:
    """Record the key with what the request made; committed with it by the caller's unit of work."""
    session.add(
        IdempotencyKey(
            owner=claim.owner,
            key=claim.key,
            operation=claim.operation,
            fingerprint=claim.fingerprint,
            environment_id=made.environment_id,
            job_run_id=made.job_run_id,
        )
    )
    session.flush()
