"""Who may open an environment's public URL: anyone, or people signed in to envhub.

A project chooses (``UrlAccess``). For ``sign_in``, envhub's gateway stands in
front of the environment and lets a browser through when it carries a pass
for that environment, made like this:

1. The gateway sends a browser without a pass to envhub's own host
   (``/auth/environment/<id>?next=<path>``), where the person's envhub
   session is (signing in first if need be).
2. envhub checks that the person may see the environment and sends the
   browser back to the environment's host with a *ticket*: a pass of one
   minute, in the URL of the reserved path ``ACCESS_PATH``.
3. The gateway turns the ticket into a *cookie* pass on the environment's
   host (host-only, HttpOnly), and from then on lets the browser through
   while the envhub session behind it lives and the person may still see
   the environment.

A pass is ``<payload>.<signature>``: base64url JSON and its HMAC-SHA256 with
a key only envhub holds. It names its kind, so a cookie cannot be replayed
as a ticket or the other way round, the environment, and the session it
came from (by the digest naming it), so signing out of envhub ends it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from envhub.errors import ValidationFailed


class UrlAccess(StrEnum):
    public = "public"  # anyone with the URL, like most preview URLs
    sign_in = "sign_in"  # people who may see the environment in envhub, signed in


# The same choices as a type, for schemas (REST's OpenAPI document, MCP tools): an enum there.
UrlAccessName = Literal["public", "sign_in"]

# What each choice means, in the words every face shows people.
URL_ACCESS_LABELS: dict[UrlAccess, str] = {
    UrlAccess.public: "Anyone with the link",
    UrlAccess.sign_in: "People signed in to envhub who can see the environment",
}


class PassKind(StrEnum):
    ticket = "ticket"  # in a URL, for one minute: carries sign-in over to the environment's host
    cookie = "cookie"  # on the environment's host, for as long as the envhub session lives


# The path on an environment's host where the gateway takes a ticket; the
# environment's own app never sees requests for it.
ACCESS_PATH = "/.envhub/access"
TICKET_SECONDS = 60
_MAX_PASS = 1024  # characters; anything longer is not one of ours


@dataclass(frozen=True, slots=True)
class UrlPass:
    kind: PassKind
    environment_id: int
    session_hash: str  # the envhub session the pass came from
    expires: int  # Unix seconds


def parse_url_access(value: object) -> UrlAccess:
    try:
        return UrlAccess(str(value))
    except ValueError:
        choices = ", ".join(access.value for access in UrlAccess)
        raise ValidationFailed(
            f"url_access must be one of {choices}, not {value!r}", details={"field": "url_access"}
        ) from None


def seal(key: bytes, issued: UrlPass) -> str:
    payload = json.dumps(
        {"k": issued.kind.value, "e": issued.environment_id, "s": issued.session_hash, "x": issued.expires},
        separators=(",", ":"),
    ).encode()
    body = _b64(payload)
    return f"{body}.{_b64(_mac(key, body))}"


def opened(
    key: bytes, value: str | None, *, kind: PassKind, environment_id: int, now: float
) -> UrlPass | None:
    """The pass in ``value`` when it is genuine, of ``kind``, for ``environment_id`` and not expired."""
    if not value or len(value) > _MAX_PASS or value.count(".") != 1:
        return None
    body, signature = value.split(".")
    try:
        presented = _unb64(signature)
        fields = json.loads(_unb64(body))
        issued = UrlPass(
            kind=PassKind(fields["k"]),
            environment_id=int(fields["e"]),
            session_hash=str(fields["s"]),
            expires=int(fields["x"]),
        )
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None
    if not hmac.compare_digest(presented, _mac(key, body)):
        return None
    if issued.kind is not kind or issued.environment_id != environment_id or issued.expires <= now:
        return None
    return issued


def safe_next(path: str | None) -> str:
    """Where to go on the environment's host after the ticket: a path of that host, or ``/``.

    Never a URL of another host (``//evil.example``, ``/\\evil.example``),
    so the access path cannot be made into an open redirect.
    """
    if not path or not path.startswith("/") or path.startswith(("//", "/\\")) or len(path) > 2000:
        return "/"
    if any(ord(char) < 0x20 or char == "\\" for char in path):
        return "/"
    return path


def _mac(key: bytes, body: str) -> bytes:
    return hmac.new(key, body.encode(), hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
