"""The local gateway: ``http://<env>.<project>.<team>.localhost:<port>`` -> the environment.

An ASGI middleware in front of everything else. Requests whose Host names an
environment are proxied (HTTP streamed both ways, WebSockets relayed) to the
port the local runtime gave it; unknown environments get a 404 page, ones not
ready yet a 503 page that refreshes itself. Every other request passes through.
"""

from __future__ import annotations

import asyncio
import html
import logging
import time
from typing import Any

import httpx
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from envhub.models.db import session_scope
from envhub.services.gateway import Resolution, resolve_public_host
from envhub.services.ports import runtime, url_provider

log = logging.getLogger(__name__)

_HOP_BY_HOP = {
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
    b"trailers", b"transfer-encoding", b"upgrade", b"host", b"content-length",
}  # fmt: skip
_CACHE_SECONDS = 1.0


class GatewayMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._client: httpx.AsyncClient | None = None
        self._cache: dict[str, tuple[float, Resolution]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = _header(scope, b"host")
        route = url_provider().route(host) if host else None
        if route is None:
            await self.app(scope, receive, send)
            return
        resolution = await self._resolve(route.team, route.project, route.environment)
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send, resolution)
        else:
            await self._http(scope, receive, send, resolution)

    async def _resolve(self, team: str, project: str, environment: str) -> Resolution:
        key = f"{team}/{project}/{environment}"
        cached = self._cache.get(key)
        if cached and cached[0] > time.monotonic():
            return cached[1]

        def lookup() -> Resolution:
            with session_scope() as session:
                return resolve_public_host(
                    session=session, runtime=runtime(), team=team, project=project, environment=environment
                )

        resolution = await asyncio.to_thread(lookup)
        ttl = _CACHE_SECONDS if resolution.endpoint else 0.0
        self._cache[key] = (time.monotonic() + ttl, resolution)
        return resolution

    # -- HTTP --------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send, res: Resolution) -> None:
        if res.endpoint is None:
            await _status_page(send, res)
            return
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=5.0), follow_redirects=False)
        url = f"http://{res.endpoint.host}:{res.endpoint.port}{_path(scope)}"
        headers = _forward_headers(scope)

        async def body() -> Any:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                yield message.get("body", b"")
                if not message.get("more_body", False):
                    return

        has_body = scope["method"] not in ("GET", "HEAD", "OPTIONS")
        request = self._client.build_request(
            scope["method"], url, headers=headers, content=body() if has_body else None
        )
        try:
            upstream = await self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            log.info("gateway: %s unreachable: %s", res.label, exc)
            await _status_page(send, res, unreachable=True)
            return
        try:
            response_headers = [
                (k.lower(), v) for k, v in upstream.headers.raw if k.lower() not in _HOP_BY_HOP
            ]
            await send(
                {"type": "http.response.start", "status": upstream.status_code, "headers": response_headers}
            )
            async for chunk in upstream.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await upstream.aclose()

    # -- WebSocket ---------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send, res: Resolution) -> None:
        first = await receive()
        if first["type"] != "websocket.connect":
            return
        if res.endpoint is None:
            await send({"type": "websocket.close", "code": 1013 if res.found else 4404})
            return
        url = f"ws://{res.endpoint.host}:{res.endpoint.port}{_path(scope)}"
        subprotocols = [p.strip() for p in _header(scope, b"sec-websocket-protocol").split(",") if p.strip()]
        try:
            upstream = await ws_connect(
                url,
                subprotocols=subprotocols or None,  # type: ignore[arg-type]
                additional_headers=[
                    (k.decode(), v.decode())
                    for k, v in _forward_headers(scope)
                    if not k.startswith(b"sec-websocket")
                ],
                max_size=None,
                open_timeout=10,
            )
        except (OSError, InvalidHandshake, InvalidStatus, TimeoutError) as exc:
            log.info("gateway: websocket to %s failed: %s", res.label, exc)
            await send({"type": "websocket.close", "code": 1011})
            return
        await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})

        async def client_to_upstream() -> None:
            while True:
                message: Message = await receive()
                if message["type"] == "websocket.disconnect":
                    await upstream.close()
                    return
                if message.get("bytes") is not None:
                    await upstream.send(message["bytes"])
                elif message.get("text") is not None:
                    await upstream.send(message["text"])

        async def upstream_to_client() -> None:
            try:
                async for data in upstream:
                    if isinstance(data, bytes):
                        await send({"type": "websocket.send", "bytes": data})
                    else:
                        await send({"type": "websocket.send", "text": data})
            except ConnectionClosed:
                pass
            await send({"type": "websocket.close", "code": upstream.close_code or 1000})

        tasks = [asyncio.create_task(client_to_upstream()), asyncio.create_task(upstream_to_client())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await upstream.close()


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return ""


def _path(scope: Scope) -> str:
    path = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string", b"")
    return str((path + (b"?" + query if query else b"")).decode("latin-1"))


def _forward_headers(scope: Scope) -> list[tuple[bytes, bytes]]:
    headers = [(k.lower(), v) for k, v in scope.get("headers", []) if k.lower() not in _HOP_BY_HOP]
    client = scope.get("client")
    if client:
        headers.append((b"x-forwarded-for", str(client[0]).encode()))
    headers.append((b"x-forwarded-host", _header(scope, b"host").encode()))
    headers.append((b"x-forwarded-proto", b"https" if scope.get("scheme") in ("https", "wss") else b"http"))
    return headers


async def _status_page(send: Send, res: Resolution, *, unreachable: bool = False) -> None:
    if not res.found:
        status, title = 404, "No such environment"
        text = (
            f"There is no environment at this address ({html.escape(res.label)}). "
            "It may have been deleted, or the name is mistyped."
        )
        refresh = ""
    else:
        status = 503 if not unreachable else 502
        phase = res.phase.value if res.phase else "unknown"
        title = "Environment not ready" if not unreachable else "Environment not answering"
        text = (
            f"{html.escape(res.label)} is <b>{html.escape(phase)}</b>"
            f"{': ' + html.escape(res.message) if res.message else ''}. "
            "This page refreshes by itself."
        )
        refresh = '<meta http-equiv="refresh" content="3">'
    body = f"""<!doctype html><html><head><meta charset="utf-8">{refresh}
<title>{title} · envhub</title><meta name="viewport" content="width=device-width">
<style>body{{font-family:system-ui,sans-serif;background:#0f1115;color:#e6e6e6;display:flex;
min-height:100vh;align-items:center;justify-content:center;margin:0}}main{{max-width:36rem;padding:2rem;
border:1px solid #2a2f3a;border-radius:12px;background:#161a22}}h1{{font-size:1.25rem;margin:0 0 .75rem}}
p{{line-height:1.5;color:#b8bcc6}}small{{color:#7d8494}}</style></head>
<body><main><h1>{title}</h1><p>{text}</p><small>envhub gateway · HTTP {status}</small></main></body></html>"""
    payload = body.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/html; charset=utf-8"),
                (b"content-length", str(len(payload)).encode()),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
