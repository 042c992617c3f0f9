"""Encryption at rest: AES-256-GCM envelopes for the secrets envhub keeps.

An envelope is ``v1.<key id>.<base64url(nonce | ciphertext+tag)>``. The key id
(the first bytes of the key's SHA-256) says which key sealed it, so a value
sealed under an older key (ENVHUB_ENCRYPTION_OLD_KEYS) still opens after a
rotation, and one sealed under a lost key fails with a clear error instead of
garbage. Each envelope is bound to its purpose as associated data (e.g.
``secret:team:3:project:5:DB_PASSWORD``), so a ciphertext copied into another
row or field does not open there.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from envhub.config import Settings, get_settings
from envhub.errors import ConfigurationError, SecretUnreadable

VERSION = "v1"
_NONCE = 12


def _kid(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Cipher:
    def __init__(self, key: bytes, old_keys: Sequence[bytes] = ()) -> None:
        if len(key) != 32 or any(len(k) != 32 for k in old_keys):
            raise ConfigurationError("encryption keys must be 32 bytes")
        self._current = (_kid(key), AESGCM(key))
        self._keys = {_kid(k): AESGCM(k) for k in (*old_keys, key)}

    def seal(self, plain: str, *, purpose: str) -> str:
        kid, aead = self._current
        nonce = os.urandom(_NONCE)
        sealed = aead.encrypt(nonce, plain.encode("utf-8"), purpose.encode())
        return f"{VERSION}.{kid}.{_b64(nonce + sealed)}"

    def open(self, envelope: str, *, purpose: str) -> str:
        try:
            version, kid, body = envelope.split(".", 2)
            raw = _unb64(body)
        except (ValueError, binascii.Error) as exc:
            raise SecretUnreadable("a stored secret is damaged") from exc
        aead = self._keys.get(kid)
        if version != VERSION or aead is None:
            raise SecretUnreadable("a stored secret was encrypted with a key envhub does not have")
        try:
            return aead.decrypt(raw[:_NONCE], raw[_NONCE:], purpose.encode()).decode("utf-8")
        except InvalidTag as exc:
            raise SecretUnreadable("a stored secret failed its integrity check") from exc


def _parse_key(text: str, name: str) -> bytes:
    try:
        key = _unb64(text.strip())
    except (ValueError, binascii.Error) as exc:
        raise ConfigurationError(f"{name}: not base64") from exc
    if len(key) != 32:
        raise ConfigurationError(f"{name}: must be 32 bytes (base64), e.g. {_b64(os.urandom(32))}")
    return key


def cipher_for(settings: Settings) -> Cipher:
    configured = settings.encryption_key.get_secret_value()
    key = (
        _parse_key(configured, "ENVHUB_ENCRYPTION_KEY") if configured else settings.derived_key("encryption")
    )
    old = [
        _parse_key(part, "ENVHUB_ENCRYPTION_OLD_KEYS")
        for part in settings.encryption_old_keys.get_secret_value().split(",")
        if part.strip()
    ]
    return Cipher(key, old)


def cipher() -> Cipher:
    return cipher_for(get_settings())
