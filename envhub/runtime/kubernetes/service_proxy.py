"""envhub's gateway -> an environment's Service, through the API server's service proxy.

``/api/v1/namespaces/{ns}/services/{name}:{port}/proxy/{path}`` reaches the
Service from wherever envhub runs, with envhub's own credentials, so a cluster
without an Ingress controller or a tunnel still gives working public URLs.
This is an httpx transport: the gateway sends ``http://<name>.<ns>.svc:<port>/
<path>`` through it exactly as it sends requests to a local environment, and
bodies stream both ways. WebSockets go the same way (:meth:`ServiceProxyTransport.
connect_websocket`), as an upgrade through the proxy; kube-apiserver 1.20
drops their query string on the way (its upgrade path dials the Service's
location without it).

The proxy is not transparent, so this undoes what it does:

* It rewrites links. HTML answers (``text/html`` without a content encoding,
  or gzip, which it decompresses and compresses again) have every absolute
  ``href``/``src``/... prefixed with the proxy path, and so has any
  ``Location``. The prefix is stripped again here (HTML as it streams); the
  request asks for no gzip, so HTML comes back in a form this can read.
* It answers for the Service when there is nothing to reach: 503 "no endpoints
  available" (not ready: the gateway's not-ready page), 500 "error trying to
  reach service" (unreachable: its not-answering page). An app could answer the
  same JSON; it would only get envhub's page for its own URL.
* It acts on the caller's credentials: a client's ``Impersonate-*`` header
  would make envhub impersonate someone, a client's ``Authorization`` would
  replace envhub's. Neither is ever forwarded; the app does not receive the
  client's ``Authorization`` header through this path (the API server strips
  envhub's).

Paths are confined to the Service: a ``.`` or ``..`` segment (percent-encoded
too) is refused with 400 here, because URL normalisation would otherwise walk
out of the proxy prefix into the rest of the API, with envhub's credentials.
"""

from __future__ import annotations

import json
import logging
import re
import ssl
from collections.abc import AsyncIterator, Iterable
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit, urlunsplit

import httpx
from kubernetes.client import Configuration
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from envhub.errors import NotReady

log = logging.getLogger(__name__)

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
# What a client may not hand to the API server in envhub's name.
_REFUSED_HEADERS = ("authorization", "impersonate-", "x-remote-", "host")
STATUS_BODY_LIMIT = 64 * 1024  # an API server's Status is a few hundred bytes


def service_of(host: str) -> tuple[str, str] | None:
    """(service, namespace) of ``<service>.<namespace>.svc``; None for any other host."""
    parts = host.split(".")
    if len(parts) != 3 or parts[2] != "svc" or not all(_LABEL.fullmatch(p) for p in parts[:2]):
        return None
    return parts[0], parts[1]


def proxy_prefix(namespace: str, service: str, port: int) -> str:
    return f"/api/v1/namespaces/{namespace}/services/{service}:{port}/proxy"


def confined(raw_path: bytes) -> bool:
    """Whether a request path stays below the proxy prefix: no dot segments, however encoded."""
    path = raw_path.split(b"?", 1)[0]
    return all(unquote_to_bytes(segment) not in (b".", b"..") for segment in path.split(b"/"))


def _ssl_context(configuration: Configuration) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert or None)
    if not configuration.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file or None)
    return context


def _accept_encoding(value: str) -> str:
    kept = [
        part.strip()
        for part in value.split(",")
        if part.strip() and part.split(";", 1)[0].strip().lower() not in ("gzip", "x-gzip")
    ]
    return ", ".join(kept) or "identity"


class _Replacing(httpx.AsyncByteStream):
    """A response body with every ``old`` replaced by ``new``, also across chunk boundaries."""

    def __init__(self, inner: httpx.Response, old: bytes, new: bytes) -> None:
        self._inner, self._old, self._new = inner, old, new

    async def __aiter__(self) -> AsyncIterator[bytes]:
        carry = b""
        async for chunk in self._inner.aiter_raw():
            out, carry = self.replace(carry + chunk)
            if out:
                yield out
        if carry:
            yield carry

    def replace(self, buffer: bytes) -> tuple[bytes, bytes]:
        """(``buffer`` replaced, up to a possible match's start at its end; that held-back start)."""
        old, new = self._old, self._new
        out = bytearray()
        position = 0
        while (found := buffer.find(old, position)) != -1:
            out += buffer[position:found] + new
            position = found + len(old)
        rest = buffer[position:]
        for size in range(min(len(old) - 1, len(rest)), 0, -1):
            if old.startswith(rest[-size:]):
                return bytes(out + rest[:-size]), rest[-size:]
        return bytes(out + rest), b""

    async def aclose(self) -> None:
        await self._inner.aclose()


class _Replay(httpx.AsyncByteStream):
    """A body whose start was read already (to look at it), then the rest as it comes."""

    def __init__(self, head: bytes, rest: AsyncIterator[bytes] | None, inner: httpx.Response) -> None:
        self._head, self._rest, self._inner = head, rest, inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._head:
            yield self._head
        if self._rest is not None:
            async for chunk in self._rest:
                yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


def _forwardable(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(name, value) for name, value in headers if not name.lower().startswith(_REFUSED_HEADERS)]


class ServiceProxyTransport(httpx.AsyncBaseTransport):
    """Sends ``http://<service>.<namespace>.svc:<port>/...`` through the API server."""

    def __init__(self, configuration: Configuration) -> None:
        self._configuration = configuration
        self._server = str(configuration.host).rstrip("/")
        self._ssl = _ssl_context(configuration)
        self._inner = httpx.AsyncHTTPTransport(verify=self._ssl, trust_env=False)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        target = service_of(request.url.host)
        if target is None or request.url.port is None:
            raise httpx.ConnectError(f"{request.url.host} is not an environment's Service", request=request)
        service, namespace = target
        raw_path = request.url.raw_path
        if not confined(raw_path):
            refusal = b"Bad Request: dot segments are not allowed in the path\n"
            return httpx.Response(
                400,
                headers={"content-type": "text/plain; charset=utf-8", "content-length": str(len(refusal))},
                stream=httpx.ByteStream(refusal),
            )
        prefix = proxy_prefix(namespace, service, request.url.port)
        url = httpx.URL(f"{self._server}{prefix}{raw_path.decode('ascii')}")
        headers = [("host", url.netloc.decode("ascii"))]
        headers += [
            (name, value)
            for name, value in _forwardable(request.headers.multi_items())
            if name.lower() != "accept-encoding"
        ]
        headers.append(("accept-encoding", _accept_encoding(request.headers.get("accept-encoding", ""))))
        headers += self._credentials()
        upstream = await self._inner.handle_async_request(
            httpx.Request(
                request.method, url, headers=headers, stream=request.stream, extensions=request.extensions
            )
        )
        upstream = await self._answer_for_the_service(
            upstream, request, f"{namespace}/{service}:{request.url.port}"
        )
        return _undo_rewrites(upstream, prefix)

    def _credentials(self) -> list[tuple[str, str]]:
        # As the generated client does: refreshed (exec plugins, in-cluster token files) on each read.
        credential = self._configuration.auth_settings().get("BearerToken")
        if credential and credential.get("value"):
            return [("authorization", str(credential["value"]))]
        return []

    async def connect_websocket(self, url: str, **options: Any) -> ClientConnection:
        """The WebSocket of ``ws://<service>.<namespace>.svc:<port>/...``, upgraded through the proxy."""
        parts = httpx.URL(url)
        target = service_of(parts.host)
        if target is None or parts.port is None:
            raise OSError(f"{parts.host} is not an environment's Service")
        if not confined(parts.raw_path):
            raise OSError("dot segments are not allowed in the path")
        service, namespace = target
        server = httpx.URL(self._server)
        scheme = "wss" if server.scheme == "https" else "ws"
        upstream = f"{scheme}://{server.netloc.decode('ascii')}{server.raw_path.decode('ascii').rstrip('/')}"
        upstream += proxy_prefix(namespace, service, parts.port) + parts.raw_path.decode("ascii")
        headers = _forwardable(options.pop("additional_headers", None) or [])
        options["additional_headers"] = headers + self._credentials()
        if scheme == "wss":
            options["ssl"] = self._ssl
        return await ws_connect(upstream, **options)

    async def _answer_for_the_service(
        self, upstream: httpx.Response, request: httpx.Request, label: str
    ) -> httpx.Response:
        """Raise for the API server's own "cannot reach it" answers; else the answer, unread."""
        content_type = upstream.headers.get("content-type", "")
        if upstream.status_code not in (403, 404, 500, 503) or not content_type.startswith(
            "application/json"
        ):
            return upstream
        head = b""
        chunks: AsyncIterator[bytes] | None = upstream.aiter_raw()
        assert chunks is not None
        async for chunk in chunks:
            head += chunk
            if len(head) > STATUS_BODY_LIMIT:
                break
        else:
            status = _status(head)
            message = str(status.get("message", "")) if status else ""
            if message.startswith(("no endpoints available", "no service port")) or (
                status
                and status.get("reason") == "NotFound"
                and (status.get("details") or {}).get("kind") == "services"
            ):
                await upstream.aclose()
                raise NotReady(f"{label}: {message}")
            if message.startswith("error trying to reach service"):
                await upstream.aclose()
                raise httpx.ConnectError(f"{label}: {message}", request=request)
            if status and status.get("reason") == "Forbidden" and "services/proxy" in message:
                log.warning("envhub may not use the service proxy (RBAC: services/proxy): %s", message)
                await upstream.aclose()
                raise httpx.ConnectError(f"{label}: {message}", request=request)
            chunks = None  # read to the end already
        return httpx.Response(
            upstream.status_code,
            headers=upstream.headers,
            stream=_Replay(head, chunks, upstream),
            extensions=upstream.extensions,
        )


def _status(body: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return data if isinstance(data, dict) and data.get("kind") == "Status" else None


def _undo_rewrites(upstream: httpx.Response, prefix: str) -> httpx.Response:
    """The answer as the app gave it: the proxy's prefix out of ``Location`` and HTML links."""
    headers = upstream.headers.copy()
    location = headers.get("location")
    if location:
        parts = urlsplit(location)
        if parts.path == prefix or parts.path.startswith(prefix + "/"):
            headers["location"] = urlunsplit(parts._replace(path=parts.path[len(prefix) :] or "/"))
    media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "text/html" or headers.get("content-encoding", "identity") != "identity":
        if headers == upstream.headers:
            return upstream
        return httpx.Response(
            upstream.status_code, headers=headers, stream=_Replay(b"", upstream.aiter_raw(), upstream),
            extensions=upstream.extensions,
        )  # fmt: skip
    headers.pop("content-length", None)  # the body gets shorter
    return httpx.Response(
        upstream.status_code,
        headers=headers,
        stream=_Replacing(upstream, f"{prefix}/".encode(), b"/"),
        extensions=upstream.extensions,
    )
