"""The audit log as a hash chain: each event's MAC covers the previous one's.

An event is reduced to a canonical JSON document (sorted keys, no spaces,
timestamps as UTC ISO strings with microseconds) together with its position
``seq`` and the previous event's MAC. Editing any field, deleting an event or
swapping two changes a MAC that no longer matches. The MAC is an HMAC keyed
with envhub's secret, so someone who can write to the database but does not
hold the key cannot rebuild a consistent chain after tampering.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64

# The fields that make up an event, in the order they are documented.
FIELDS = (
    "seq",
    "time",
    "actor_id",
    "actor",
    "principal_type",
    "token_id",
    "action",
    "target_type",
    "target_id",
    "target",
    "team_id",
    "outcome",
    "error_code",
    "source_ip",
    "user_agent",
    "details",
)


def _normal(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value


def canonical(event: dict[str, Any], previous: str) -> bytes:
    document = {name: _normal(event.get(name)) for name in FIELDS}
    document["prev_hash"] = previous
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    ).encode()


def mac(key: bytes, event: dict[str, Any], previous: str) -> str:
    return hmac.new(key, canonical(event, previous), hashlib.sha256).hexdigest()


def head_mac(key: bytes, seq: int, last_hash: str) -> str:
    """Seals the chain's end, so cutting events off the tail is noticed too."""
    return hmac.new(key, f"head:{seq}:{last_hash}".encode(), hashlib.sha256).hexdigest()


# What a stored check result (a checkpoint when intact) says, in MAC order.
CHECK_FIELDS = (
    "id",  # so that a genuine result copied into a newer row does not verify
    "mode",
    "from_seq",
    "to_seq",
    "last_hash",
    "checked",
    "ok",
    "problems",
    "checked_by",
    "started_at",
    "finished_at",
)


def check_mac(key: bytes, check: dict[str, Any]) -> str:
    """Seals a stored check result, so a forged or edited checkpoint is noticed.

    The prefix keeps these MACs apart from events' and the head's: none can be
    replayed as another.
    """
    document = {name: _normal(check.get(name)) for name in CHECK_FIELDS}
    body = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hmac.new(key, b"check:" + body.encode(), hashlib.sha256).hexdigest()
