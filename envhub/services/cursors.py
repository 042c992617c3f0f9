"""Cursor pagination: pages that stay right while rows are added and removed.

An offset page shifts when a row is created before it (the next page repeats
a row) or deleted (it skips one). A keyset page does not: it continues after
the last row the client saw, by the list's sort key. The key travels as an
opaque cursor (base64 of a small JSON list) that the client passes back
unchanged; it is not a secret, only not meant to be built by hand, and every
page is authorized again, so a forged cursor shows nothing it should not.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from envhub.errors import InvalidCursor

T = TypeVar("T")
Key = tuple[str | int, ...]

MAX_LIMIT = 200
MAX_CURSOR = 500


@dataclass(frozen=True, slots=True)
class CursorPage(Generic[T]):
    items: list[T]
    next_cursor: str | None  # None on the last page


def encode(kind: str, key: Key) -> str:
    """The cursor that continues after ``key`` in a list of ``kind``."""
    raw = json.dumps([kind, *key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str, kind: str, shape: tuple[type, ...]) -> Key:
    """The key inside ``cursor``, checked against the list it must come from.

    ``shape`` gives each part's type (``str``, ``int``, or ``datetime`` for an
    ISO 8601 time, returned as its string). Anything else is ``invalid_cursor``.
    """
    bad = InvalidCursor("the cursor is not one this list gave out", details={"field": "cursor"})
    if len(cursor) > MAX_CURSOR:
        raise bad
    try:
        parts = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise bad from exc
    if not isinstance(parts, list) or len(parts) != len(shape) + 1 or parts[0] != kind:
        raise bad
    if not all(_fits(part, expected) for part, expected in zip(parts[1:], shape, strict=True)):
        raise bad
    return tuple(parts[1:])


def _fits(part: object, expected: type) -> bool:
    if expected is int:
        return type(part) is int and 0 < part < 2**31
    if not isinstance(part, str) or len(part) > 200:
        return False
    if expected is datetime:
        try:
            return datetime.fromisoformat(part).tzinfo is not None
        except ValueError:
            return False
    return True


def clamp_limit(limit: int) -> int:
    return max(1, min(limit, MAX_LIMIT))
