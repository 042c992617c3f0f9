"""Bearer secrets envhub hands out: their format, and how they are stored.

Every secret is random (32 bytes from :mod:`secrets`), shown to its owner once,
and stored only as its SHA-256 digest. A digest of a random secret cannot be
reversed or guessed, so no salt or slow hash is needed (the same reasoning as
GitHub's tokens). The prefix tells a leaked secret's kind at a glance and lets
secret scanners find it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import StrEnum


class SecretKind(StrEnum):
    # Prefixes, not secrets.
    personal_token = "ehp_"  # noqa: S105
    agent_token = "eha_"  # noqa: S105
    session = "ehs_"
    login_link = "ehl_"
    device_code = "ehd_"


@dataclass(frozen=True, slots=True)
class IssuedSecret:
    plain: str  # give to the owner once, never store
    digest: str  # store this
    hint: str  # first characters, safe to show in lists ("ehp_AbC1…")


def issue(kind: SecretKind) -> IssuedSecret:
    plain = kind.value + secrets.token_urlsafe(32)
    return IssuedSecret(plain=plain, digest=digest(plain), hint=plain[: len(kind.value) + 4] + "…")


def digest(plain: str) -> str:
    return hashlib.sha256(plain.encode("utf-8", "surrogatepass")).hexdigest()


def kind_of(plain: str) -> SecretKind | None:
    for kind in SecretKind:
        if plain.startswith(kind.value):
            return kind
    return None


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


# RFC 8628 §6.1: user codes a person types; no vowels (no words), no look-alikes.
_USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"


def user_code() -> str:
    raw = "".join(secrets.choice(_USER_CODE_ALPHABET) for _ in range(8))
    return f"{raw[:4]}-{raw[4:]}"


def normalize_user_code(value: str) -> str:
    cleaned = "".join(ch for ch in value.upper() if ch.isalnum())
    return f"{cleaned[:4]}-{cleaned[4:]}" if len(cleaned) == 8 else cleaned
