"""The checks every request to envhub itself passes before any route sees it.

* Host: only envhub's own names (DNS rebinding cannot reach a loopback envhub);
  ``/healthz`` answers any Host, ``/metrics`` also an IP address (Prometheus),
  and terminal sockets relayed between web replicas come to a pod's address
  (their route wants the replicas' signature instead). Git credentials for
  environments also answer at envhub's in-cluster name (the host of
  ``ENVHUB_GATEWAY_INTERNAL_URL``: a workspace's helper calls there; the route
  takes a bearer token only, never a cookie, so no page can lend it one).
* Origin: a browser request that changes state, and every WebSocket, must
  come from envhub's own origin. Terminal sockets (``/ws/terminal/``) make
  the same check in their route, so the refusal reaches the browser in the
  terminal protocol (an error message, close code 4403).
* CSRF: a state-changing request that carries the session cookie must carry
  the session's CSRF token (``X-CSRF-Token`` or a ``csrf_token`` form field),
  unless a bearer token really authenticated it: such a request carries no
  ambient credential. An ``Authorization`` header alone proves nothing (a
  junk ``Bearer x`` next to the cookie still needs the token), so the token
  is looked up first.
* Size: request bodies larger than ``ENVHUB_MAX_BODY_BYTES`` are refused.
* Rate: sign-in, token, webhook and environments' git credential endpoints are
  limited per client address.

The local gateway sits in front of this middleware: environments' own
traffic is theirs and is not subject to envhub's rules.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from envhub.api.auth import bearer_authenticates
from envhub.api.clients import allowed_hosts, allowed_origins, client_ip, header, host_name
from envhub.api.errors import body_of, status_of
from envhub.api.ratelimit import RateLimiter, bucket_of
from envhub.config import get_settings
from envhub.domain import credentials
from envhub.domain.git_credentials import ENDPOINT as GIT_CREDENTIALS
from envhub.errors import (
    CsrfRejected,
    EnvhubError,
    HostNotAllowed,
    OriginRejected,
    PayloadTooLarge,
    RateLimited,
)
from envhub.services.authentication import cookie_value
from envhub.services.sessions import csrf_valid, session_cookie_name

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Probes from the platform (kubelet, load balancer) use whatever Host they like.
_ANY_HOST = ("/healthz",)
# Prometheus scrapes a pod by its address: an IP address as Host is accepted here. It is
# never a DNS-rebinding page's Host (that one is the attacker's name), so a web page still
# cannot read a loopback envhub's metrics.
_ADDRESS_HOST = ("/metrics",)
# WebSocket routes that check the Origin themselves (api/terminal/routes.py).
_OWN_ORIGIN_CHECK = ("/ws/terminal/",)
# Terminal sockets one web replica relays to another, at its internal address
# (its pod IP, not a name of envhub's): the route refuses any without the
# replicas' signature (api/terminal/relay.py) before anything else.
_SIGNED_BY_REPLICAS = "/internal/ws/terminal/"


class GuardMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._limiter: RateLimiter | None = None

    def _rate_limiter(self) -> RateLimiter:
        url = get_settings().redis_url
        if self._limiter is None or self._limiter.redis_url != url:
            self._limiter = RateLimiter(url)
        return self._limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        try:
            receive = await self._check(scope, receive)
        except EnvhubError as exc:
            await _refuse(scope, send, exc)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except PayloadTooLarge as exc:  # a body without Content-Length grew too big while read
            if started:
                raise
            await _refuse(scope, send, exc)

    async def _check(self, scope: Scope, receive: Receive) -> Receive:
        settings = get_settings()
        path = str(scope.get("path", ""))
        host = host_name(header(scope, b"host") or "")
        by_address = path in _ADDRESS_HOST and _is_address(host)
        relayed = scope["type"] == "websocket" and path.startswith(_SIGNED_BY_REPLICAS)
        in_cluster = path == GIT_CREDENTIALS and host == _internal_host(settings.gateway_internal_url)
        allowed = by_address or relayed or in_cluster or host in allowed_hosts(settings)
        if path not in _ANY_HOST and not allowed:
            raise HostNotAllowed(f"envhub does not answer to the host name {host[:100]!r}")
        origin = (header(scope, b"origin") or "").lower()
        method = str(scope.get("method", "GET")).upper()
        websocket = scope["type"] == "websocket"
        checked_by_route = websocket and path.startswith(_OWN_ORIGIN_CHECK)
        unsafe = websocket or method not in SAFE_METHODS
        if origin and unsafe and not checked_by_route and origin not in allowed_origins(settings):
            raise OriginRejected(f"requests from {origin[:100]} are not accepted")
        bucket = bucket_of(path)
        if bucket is not None:
            limit, window = settings.rate_limit(bucket)
            allowed, reset = await self._rate_limiter().hit(
                bucket, client_ip(scope, settings), limit=limit, window=window
            )
            if not allowed:
                raise RateLimited(
                    f"too many requests to {path} from this client; try again in {reset}s",
                    details={"retry_after": reset, "limit": limit, "window_seconds": window},
                )
        if websocket or method in SAFE_METHODS:
            return receive
        webhook = path.startswith("/webhooks/")
        receive = _limit_body(
            scope, receive, settings.webhook_max_body_bytes if webhook else settings.max_body_bytes
        )
        cookie = cookie_value(header(scope, b"cookie"), session_cookie_name(settings))
        if cookie is None:
            return receive
        if header(scope, b"authorization"):
            by_token: bool = await run_in_threadpool(bearer_authenticates, scope)
            if by_token:
                return receive
        digest = credentials.digest(cookie)
        if csrf_valid(digest, header(scope, b"x-csrf-token")):
            return receive
        return await _csrf_from_form(scope, receive, digest)


def _internal_host(url: str) -> str | None:
    return (urlsplit(url).hostname or None) if url else None


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _limit_body(scope: Scope, receive: Receive, limit: int) -> Receive:
    declared = header(scope, b"content-length")
    if declared is not None:
        if not declared.isdigit():
            raise PayloadTooLarge("the Content-Length header is not a number")
        if int(declared) > limit:
            raise PayloadTooLarge(f"the request body is larger than {limit} bytes", details={"limit": limit})
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise PayloadTooLarge(
                    f"the request body is larger than {limit} bytes", details={"limit": limit}
                )
        return message

    return counted


async def _csrf_from_form(scope: Scope, receive: Receive, digest: str) -> Receive:
    """Plain HTML forms (sign-out) send the token as a field: read it, then replay the body."""
    content_type = (header(scope, b"content-type") or "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise CsrfRejected("this request needs the session's CSRF token in the X-CSRF-Token header")
    body, messages = b"", []
    while True:
        message = await receive()
        messages.append(message)
        body += message.get("body", b"")
        if message["type"] != "http.request" or not message.get("more_body"):
            break
    fields = parse_qs(body.decode("utf-8", "replace"))
    if not csrf_valid(digest, (fields.get("csrf_token") or [""])[0]):
        raise CsrfRejected("the form's CSRF token does not match this session")

    async def replay() -> Message:
        return messages.pop(0) if messages else await receive()

    return replay


async def _refuse(scope: Scope, send: Send, exc: EnvhubError) -> None:
    status = status_of(exc)
    if scope["type"] == "websocket":
        # Closing before accepting makes the server answer the handshake with 403.
        await send({"type": "websocket.close", "code": 1008, "reason": exc.code})
        return
    payload = json.dumps(body_of(exc)).encode()
    headers: list[Any] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    if "retry_after" in exc.details:
        headers.append((b"retry-after", str(exc.details["retry_after"]).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
