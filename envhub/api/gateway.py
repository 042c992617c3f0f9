"""The local gateway: ``http://<env>.<project>.<team>.localhost:<port>`` -> the environment.

An ASGI middleware in front of everything else. Requests whose Host names an
environment are proxied (HTTP streamed both ways, WebSockets relayed) to where
the runtime says it answers (a local environment: its private UNIX socket);
unknown environments get a 404 page, ones not ready yet a 503 page that
refreshes itself. A request to a sleeping environment wakes it (as envhub,
audited) and gets a "waking up" page that refreshes itself into the app; every
request that reaches an environment counts as its activity (services/activity.py).
Every other request passes through.

Anyone can send any Host, so the lookup is guarded: host labels that are not
valid names never reach the database, answers (found or not) are kept in a
bounded LRU cache for a second or two, and what the app sees of the client
(``X-Forwarded-*``) is envhub's own account, never what the client claimed.
envhub's own cookies are not passed on to environments.

For a project whose URLs need sign-in, nothing of the environment (not even
its phase) is shown before the browser proves it may see it: a pass cookie
on the environment's host, got by a round trip through envhub's own host
(domain/url_access.py tells the steps). The Ingress and Cloudflare providers
route such environments here too (``https://<label>.<domain>`` hosts, found by
their public URL), so this is the one place the rule is enforced.
"""

from __future__ import annotations

import asyncio
import html
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlencode

import httpx
from cachetools import TLRUCache, TTLCache
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from websockets.asyncio.client import ClientConnection, unix_connect
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from envhub.api.clients import client_ip
from envhub.api.pages import notice_html
from envhub.config import get_settings
from envhub.domain.phases import Phase
from envhub.domain.public import host_name, is_wildcard_host
from envhub.domain.url_access import ACCESS_PATH, UrlAccess
from envhub.errors import EnvhubError, NotReady
from envhub.models.db import session_scope
from envhub.runtime.base import Endpoint, HttpRelay
from envhub.services import activity, sleeping, url_access
from envhub.services.authentication import cookie_value
from envhub.services.gateway import Resolution, resolve_public_host, resolve_url_host, valid_route
from envhub.services.ports import queue, runtime, url_provider
from envhub.services.sessions import login_cookie_name, session_cookie_name
from envhub.services.signin import ENVIRONMENT_ACCESS_PREFIX
from envhub.urls.local import LocalUrls

log = logging.getLogger(__name__)

_HOP_BY_HOP = {
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
    b"trailers", b"transfer-encoding", b"upgrade", b"host", b"content-length",
}  # fmt: skip
# What the client says about itself and its path; replaced by envhub's account.
_CLIENT_CLAIMS = {
    b"forwarded", b"x-forwarded-for", b"x-forwarded-host", b"x-forwarded-proto",
    b"x-forwarded-port", b"x-forwarded-prefix", b"x-forwarded-server", b"x-real-ip",
}  # fmt: skip
CACHE_SIZE = 1024  # host lookups remembered (found and not found), least recently used out first
_CACHE_SECONDS = 1.0  # an environment that exists: its phase and endpoint change
_NEGATIVE_SECONDS = 2.0  # no such environment: a flood of one unknown name costs one query
_TIMEOUT = httpx.Timeout(60.0, connect=5.0)
# The pass cookie on an environment's host (host-only: no other host sees it).
ACCESS_COOKIE = "envhub-access"
# How long "this session may see this environment" is believed before it is
# asked again: signing out of envhub, or losing access, ends a pass this soon.
_ADMITTED_SECONDS = 10.0
# A wake asked for is not asked for again by this process for this long (the service is idempotent
# anyway: this only spares the database a burst). Short, or a sleep right after a wake is not woken.
_WAKE_ASKED_SECONDS = 1.0
# How long "waking" is believed: the phase it waits for is a moment away.
_WAKING_CACHE_SECONDS = 0.2
# How often the "waking up" page asks again (a meta refresh: the page has no script).
_WAKING_REFRESH = 1


def _expiry(_key: str, value: Resolution, now: float) -> float:
    if value.waking:  # it turns ready any moment: the first request after that reaches the app
        return now + _WAKING_CACHE_SECONDS
    return now + (_CACHE_SECONDS if value.found else _NEGATIVE_SECONDS)


class GatewayMiddleware:
    def __init__(self, app: ASGIApp, *, cache_size: int | None = None) -> None:
        self.app = app
        self._client: httpx.AsyncClient | None = None
        self._relay_client: httpx.AsyncClient | None = None
        self._cache: TLRUCache[str, Resolution] = TLRUCache(
            maxsize=cache_size or CACHE_SIZE, ttu=_expiry, timer=time.monotonic
        )
        # Environments whose wake this process asked for lately: a burst of requests asks once.
        self._woken: TTLCache[int, bool] = TTLCache(
            maxsize=cache_size or CACHE_SIZE, ttl=_WAKE_ASKED_SECONDS, timer=time.monotonic
        )
        self._admissions: TTLCache[tuple[str, int], bool] = TTLCache(
            maxsize=cache_size or CACHE_SIZE, ttl=_ADMITTED_SECONDS, timer=time.monotonic
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        resolution = await self._route(_header(scope, b"host"))
        if resolution is None:
            await self.app(scope, receive, send)
            return
        if resolution.found and scope["type"] == "http" and scope["path"] == ACCESS_PATH:
            await self._take_ticket(scope, send, resolution)
            return
        guarded = resolution.found and resolution.url_access is UrlAccess.sign_in
        if guarded and not await self._admitted(scope, resolution):
            await _sign_in_first(scope, receive, send, resolution)
            return
        if resolution.environment_id is not None:
            activity.note(resolution.environment_id)  # a dictionary lookup; a write now and then
        if resolution.waking:
            await self._wake(resolution)
            await _waking(scope, receive, send, resolution)
            return
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send, resolution)
        else:
            await self._http(scope, receive, send, resolution)

    async def _route(self, host: str) -> Resolution | None:
        """The environment a Host names, or None when the Host is not an environment's."""
        if not host:
            return None
        provider = url_provider()
        if isinstance(provider, LocalUrls):
            route = provider.route(host)
            if route is None:
                return None
            if valid_route(team=route.team, project=route.project, environment=route.environment):
                return await self._resolve(route.team, route.project, route.environment, route.port)
            # not a name envhub could have given: no lookup, nothing cached
            return Resolution(found=False, label=f"{route.project}/{route.environment}"[:200])
        # Ingress and tunnel hosts of environments whose URLs need sign-in come here.
        name = host_name(host)
        if not is_wildcard_host(name, str(getattr(provider, "domain", ""))):
            return None

        def lookup() -> Resolution:
            with session_scope() as session:
                return resolve_url_host(session=session, runtime=runtime(), host=name)

        return await self._cached(f"host:{name}", lookup)

    # -- sleep ---------------------------------------------------------------

    async def _wake(self, res: Resolution) -> None:
        """Ask for a sleeping environment's wake, once per few seconds per environment and process."""
        environment_id = res.environment_id
        if environment_id is None or res.phase is not Phase.sleeping or environment_id in self._woken:
            return
        self._woken[environment_id] = True

        def wake() -> None:
            with session_scope() as session:
                sleeping.wake_on_visit(session=session, queue=queue(), environment_id=environment_id)

        try:
            await asyncio.to_thread(wake)
        except EnvhubError as exc:  # the page still says what is going on; the next visit asks again
            log.warning("gateway: could not wake %s: %s", res.label, exc.message)
            self._woken.pop(environment_id, None)
        # The next request reads the phase afresh, not the cached "sleeping".
        for key in [key for key, value in self._cache.items() if value.environment_id == environment_id]:
            self._cache.pop(key, None)

    # -- sign-in (projects whose URLs need it) -----------------------------

    async def _admitted(self, scope: Scope, res: Resolution) -> bool:
        assert res.environment_id is not None
        issued = url_access.cookie_pass(
            cookie_value(_header(scope, b"cookie"), ACCESS_COOKIE), environment_id=res.environment_id
        )
        if issued is None:
            return False
        key = (issued.session_hash, res.environment_id)
        admitted = self._admissions.get(key)
        if admitted is None:

            def check() -> bool:
                with session_scope() as session:
                    return url_access.still_admitted(session=session, issued=issued)

            admitted = await asyncio.to_thread(check)
            self._admissions[key] = admitted
        return admitted

    async def _take_ticket(self, scope: Scope, send: Send, res: Resolution) -> None:
        """``ACCESS_PATH?ticket=…&next=…``: the pass cookie for a good ticket, then on to ``next``."""
        assert res.environment_id is not None
        environment_id = res.environment_id
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        ticket = (query.get("ticket") or [""])[0]
        next_path = (query.get("next") or ["/"])[0]

        def admit() -> url_access.Admission | None:
            with session_scope() as session:
                return url_access.admit(
                    session=session, environment_id=environment_id, ticket=ticket, next_path=next_path
                )

        admission = await asyncio.to_thread(admit)
        if admission is None:
            again = html.escape(_access_url(environment_id, "/", res.port))
            await _page(
                send,
                403,
                "This sign-in link has expired",
                "<p>Links that carry your envhub sign-in to an environment last one minute. "
                f'<a href="{again}">Open the environment again</a>.</p>',
            )
            return
        cookie = (
            f"{ACCESS_COOKIE}={admission.cookie}; Path=/; Max-Age={admission.max_age}; HttpOnly; SameSite=Lax"
        )
        if _secure(scope):
            cookie += "; Secure"
        await send(
            {
                "type": "http.response.start",
                "status": 303,
                "headers": [
                    (b"location", admission.next_path.encode("latin-1", "replace")),
                    (b"set-cookie", cookie.encode("latin-1")),
                    (b"cache-control", b"no-store"),
                    (b"content-length", b"0"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b""})

    async def _resolve(
        self, team: str, project: str, environment: str, port: int | None = None
    ) -> Resolution:
        def lookup() -> Resolution:
            with session_scope() as session:
                return resolve_public_host(
                    session=session,
                    runtime=runtime(),
                    team=team,
                    project=project,
                    environment=environment,
                    port=port,
                )

        return await self._cached(f"{team}/{project}/{environment}:{port or ''}", lookup)

    async def _cached(self, key: str, lookup: Callable[[], Resolution]) -> Resolution:
        """The cached answer for ``key``, else ``lookup`` (blocking: in a worker thread), remembered."""
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        resolution = await asyncio.to_thread(lookup)
        self._cache[key] = resolution
        return resolution

    def _http_client(self, endpoint: Endpoint) -> tuple[httpx.AsyncClient, bool]:
        """A client that reaches ``endpoint``, and whether it is this request's own to close.

        TCP endpoints share one pooled client. A UNIX-socket endpoint gets a
        client of its own for the request (connecting there costs next to
        nothing), so no pool of per-environment clients has to be bounded.
        Relayed endpoints (a cluster's Service) share one client on the
        runtime's relay. None ever goes through a proxy from envhub's environment.
        """
        if endpoint.relay:
            if self._relay_client is None:
                relay = runtime()
                if not isinstance(relay, HttpRelay):
                    raise NotReady("this runtime cannot relay requests to the environment")
                self._relay_client = httpx.AsyncClient(
                    transport=relay.http_transport(),
                    timeout=_TIMEOUT,
                    follow_redirects=False,
                    trust_env=False,
                )
            return self._relay_client, False
        if endpoint.unix_socket is not None:
            transport = httpx.AsyncHTTPTransport(uds=endpoint.unix_socket, verify=False)
            client = httpx.AsyncClient(
                transport=transport, timeout=_TIMEOUT, follow_redirects=False, trust_env=False
            )
            return client, True
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=_TIMEOUT, follow_redirects=False, trust_env=False)
        return self._client, False

    # -- HTTP --------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send, res: Resolution) -> None:
        if res.endpoint is None:
            await _status_page(send, res)
            return
        try:
            client, owned = self._http_client(res.endpoint)
        except NotReady:
            await _status_page(send, res)
            return
        try:
            await self._proxy_http(client, scope, receive, send, res)
        finally:
            if owned:
                await client.aclose()

    async def _proxy_http(
        self, client: httpx.AsyncClient, scope: Scope, receive: Receive, send: Send, res: Resolution
    ) -> None:
        assert res.endpoint is not None
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
        request = client.build_request(
            scope["method"], url, headers=headers, content=body() if has_body else None
        )
        try:
            upstream = await client.send(request, stream=True)
        except NotReady as exc:  # a relay's "nothing behind the Service yet"
            log.info("gateway: %s not ready: %s", res.label, exc.message)
            await _status_page(send, res)
            return
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
        try:
            upstream = await _ws_open(res.endpoint, scope)
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


async def _ws_open(endpoint: Endpoint, scope: Scope) -> ClientConnection:
    url = f"ws://{endpoint.host}:{endpoint.port}{_path(scope)}"
    subprotocols = [p.strip() for p in _header(scope, b"sec-websocket-protocol").split(",") if p.strip()]
    options: dict[str, Any] = {
        "subprotocols": subprotocols or None,
        "additional_headers": [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in _forward_headers(scope)
            if not k.startswith(b"sec-websocket")
        ],
        "max_size": None,
        "open_timeout": 10,
        "proxy": None,
    }
    if endpoint.relay:
        relay = runtime()
        if not isinstance(relay, HttpRelay):
            raise OSError("this runtime cannot relay WebSockets to the environment")
        return await relay.connect_websocket(url, **options)
    if endpoint.unix_socket is not None:
        return await unix_connect(endpoint.unix_socket, url, **options)
    return await ws_connect(url, **options)


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
    """The request's headers for the app: hop-by-hop and client claims out, envhub's account in."""
    own_cookies = {session_cookie_name(), login_cookie_name(), ACCESS_COOKIE}
    headers: list[tuple[bytes, bytes]] = []
    for key, value in scope.get("headers", []):
        name = key.lower()
        if name in _HOP_BY_HOP or name in _CLIENT_CLAIMS:
            continue
        if name == b"cookie":
            value = _without_cookies(value, own_cookies)
            if not value:
                continue
        headers.append((name, value))
    settings = get_settings()
    address = client_ip(scope, settings)
    if address:
        headers.append((b"x-forwarded-for", address.encode("latin-1")))
    headers.append((b"x-forwarded-host", _header(scope, b"host").encode("latin-1")))
    headers.append((b"x-forwarded-proto", b"https" if _secure(scope) else b"http"))
    return headers


def _secure(scope: Scope) -> bool:
    """Whether the browser reached envhub over TLS (directly, or through its trusted proxy)."""
    settings = get_settings()
    return scope.get("scheme") in ("https", "wss") or (
        settings.trusted_proxy_hops > 0 and settings.base_url.startswith("https://")
    )


def _access_url(environment_id: int, next_path: str, port: int | None = None) -> str:
    """envhub's own page that carries sign-in over to the environment (to the host of its forwarded
    ``port``, when one is named), then comes back to ``next_path``."""
    base = get_settings().base_url.rstrip("/")
    query = {"next": next_path, **({"port": str(port)} if port is not None else {})}
    return f"{base}{ENVIRONMENT_ACCESS_PREFIX}{environment_id}?{urlencode(query)}"


async def _sign_in_first(scope: Scope, receive: Receive, send: Send, res: Resolution) -> None:
    """No pass: a page load goes to envhub to sign in; anything else is refused."""
    assert res.environment_id is not None
    if scope["type"] == "websocket":
        first = await receive()
        if first["type"] == "websocket.connect":
            await send({"type": "websocket.close", "code": 4401})
        return
    target = _access_url(res.environment_id, _path(scope), res.port)
    if scope["method"] in ("GET", "HEAD"):
        await send(
            {
                "type": "http.response.start",
                "status": 303,
                "headers": [
                    (b"location", target.encode("latin-1", "replace")),
                    (b"cache-control", b"no-store"),
                    (b"content-length", b"0"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b""})
        return
    await _page(
        send,
        401,
        "Sign in to envhub first",
        "<p>This environment's project lets in only people signed in to envhub. "
        f'<a href="{html.escape(target)}">Sign in</a>, then send the request again.</p>',
    )


def _without_cookies(header: bytes, names: set[str]) -> bytes:
    """``header`` (a Cookie header) without the cookies called ``names``."""
    kept = [
        part
        for part in header.split(b";")
        if part.strip() and part.split(b"=", 1)[0].strip().decode("latin-1") not in names
    ]
    return b";".join(kept).strip()


async def _waking(scope: Scope, receive: Receive, send: Send, res: Resolution) -> None:
    """The "waking up" answer: a page that refreshes itself into the app, or a retry for programs."""
    if scope["type"] == "websocket":
        first = await receive()
        if first["type"] == "websocket.connect":
            await send({"type": "websocket.close", "code": 1013})  # try again later
        return
    label = html.escape(res.label)
    body = (
        f'<div role="status" aria-live="polite"><p><b>{label}</b> was asleep after a while without use '
        "and is waking up. This page turns into the app as soon as it answers.</p>"
        f'<p><progress aria-label="Waking up {label}"></progress></p></div>'
        f"<p>Its files were kept while it slept; programs can send the request again after "
        f"the Retry-After seconds.</p>"
    )
    await _page(
        send,
        503,
        f"Waking up {res.label}",
        body,
        refresh=_WAKING_REFRESH,
        extra_headers=[(b"retry-after", str(_WAKING_REFRESH).encode())],
    )


async def _status_page(send: Send, res: Resolution, *, unreachable: bool = False) -> None:
    if not res.found:
        status, title = 404, "No such environment"
        text = (
            f"There is no environment at this address ({html.escape(res.label)}). "
            "It may have been deleted, or the name is mistyped."
        )
        refresh = 0
    else:
        status = 503 if not unreachable else 502
        phase = res.phase.value if res.phase else "unknown"
        title = "Environment not ready" if not unreachable else "Environment not answering"
        text = (
            f"{html.escape(res.label)} is <b>{html.escape(phase)}</b>"
            f"{': ' + html.escape(res.message) if res.message else ''}. "
            "This page refreshes by itself."
        )
        refresh = 3
    await _page(send, status, title, f"<p>{text}</p>", refresh=refresh)


async def _page(
    send: Send,
    status: int,
    title: str,
    body_html: str,
    *,
    refresh: int = 0,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    payload = notice_html(status, title, body_html, refresh=refresh, source="envhub gateway").encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/html; charset=utf-8"),
                (b"content-length", str(len(payload)).encode()),
                (b"cache-control", b"no-store"),
                *(extra_headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
