"""Security headers on every response envhub itself sends.

The Content-Security-Policy allows scripts from envhub's own origin plus, by
hash, exactly the inline scripts of the page being sent (the Reflex build
inlines a few bootstrapping scripts), so an injected inline script does not
run. ``'unsafe-eval'`` stays: Reflex runs what the server sends over its
socket (toasts, copy-to-clipboard) through ``eval``; that socket is
authenticated and origin-checked, and no page input reaches it as code.
Styles may be inline: the component library sets them at run time.
Frames, plugins and foreign form targets are refused. ``/auth/`` and API
answers are never cached.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from envhub.config import get_settings

_INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.DOTALL | re.IGNORECASE)
_MAX_HTML = 2 * 1024 * 1024
_FILE_SENDING = {"http.response.pathsend", "http.response.zerocopysend"}
_NOT_FOR_PAGES = {b"accept-encoding", b"if-none-match", b"if-modified-since"}
_NO_STORE = ("/auth/", "/api/", "/device", "/sign-in")


def _hashes(html: bytes) -> list[str]:
    found = []
    for match in _INLINE_SCRIPT.finditer(html):
        digest = base64.b64encode(hashlib.sha256(match.group(1)).digest()).decode()
        found.append(f"'sha256-{digest}'")
    return sorted(set(found))


def content_security_policy(script_hashes: list[str]) -> str:
    settings = get_settings()
    base = urlsplit(settings.base_url)
    socket = f"{'wss' if base.scheme == 'https' else 'ws'}://{base.netloc}"
    # A sign-out form continues to the provider's logout page: form-action must allow it.
    form_targets = ["'self'"]
    if settings.oidc_issuer:
        issuer = urlsplit(settings.oidc_issuer)
        form_targets.append(f"{issuer.scheme}://{issuer.netloc}")
    directives = [
        "default-src 'self'",
        "script-src " + " ".join(["'self'", "'unsafe-eval'", *script_hashes]),
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "font-src 'self' data:",
        f"connect-src 'self' {socket}",
        "frame-ancestors 'none'",
        "frame-src 'none'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action " + " ".join(form_targets),
    ]
    return "; ".join(directives)


def _common(path: str) -> list[tuple[bytes, bytes]]:
    settings = get_settings()
    headers = [
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"same-origin"),
        (b"cross-origin-opener-policy", b"same-origin"),
        (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=(), usb=()"),
    ]
    if settings.secure_cookies:
        headers.append((b"strict-transport-security", b"max-age=31536000; includeSubDomains"))
    if path.startswith(_NO_STORE):
        headers.append((b"cache-control", b"no-store"))
    return headers


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        accept = next((v for k, v in scope.get("headers", []) if k == b"accept"), b"")
        if b"text/html" in accept:
            # The policy hashes the page's inline scripts, so the page must
            # come uncompressed; pages are small, assets still get compressed.
            # Nor may it be handed to the server as a file (pathsend): the body must pass here.
            extensions = {k: v for k, v in (scope.get("extensions") or {}).items() if k not in _FILE_SENDING}
            # And never a 304: its (hash-less) policy would replace the cached page's.
            headers = [(k, v) for k, v in scope["headers"] if k not in _NOT_FOR_PAGES]
            scope = {**scope, "headers": headers, "extensions": extensions}
        start: dict[str, Any] | None = None
        buffered: list[bytes] = []

        async def wrapped(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() not in {b"x-frame-options", b"content-security-policy"}
                ]
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in _common(path) if k not in present]
                content_type = {k.lower(): v for k, v in headers}.get(b"content-type", b"")
                if not content_type.startswith(b"text/html"):
                    headers.append((b"content-security-policy", content_security_policy([]).encode()))
                    await send({**message, "headers": headers})
                    return
                start = {**message, "headers": headers}  # HTML: the policy needs the body's scripts
                return
            if start is None:
                await send(message)
                return
            if message["type"] != "http.response.body":  # nothing else should come; never drop it
                await send(start)
                start = None
                await send(message)
                return
            buffered.append(message.get("body", b""))
            if message.get("more_body") and sum(map(len, buffered)) < _MAX_HTML:
                return
            body = b"".join(buffered)
            policy = content_security_policy(_hashes(body)).encode()
            headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
            headers += [(b"content-security-policy", policy), (b"content-length", str(len(body)).encode())]
            await send({**start, "headers": headers})
            await send(
                {"type": "http.response.body", "body": body, "more_body": bool(message.get("more_body"))}
            )
            start = None

        await self.app(scope, receive, wrapped)
