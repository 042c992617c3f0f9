"""``/metrics`` of the web process, and the request latency it reports.

:class:`RequestMetrics` is the outermost middleware, so a request's time
includes the gateway and the guard. It labels a request by the template of
the route that served it (``/api/v1/environments/{environment_id}``), read
from the ASGI scope the router fills in, never by its raw path: ids and names
in paths would make a series per environment. What Reflex serves is labelled
by the template of the route or mount its router matched (a Starlette
``path_format`` too, never a raw path). Anything no router matched (an
environment's traffic through the local gateway, a refusal by the guard) is
``other``. WebSockets are left out: a terminal's socket lives for hours, and
terminals have their own figures.

``/metrics`` answers envhub's own host names and any IP address as Host
(Prometheus scrapes a pod by its address; api/guard.py). With
``ENVHUB_METRICS_TOKEN`` set it wants ``Authorization: Bearer <token>``;
without, anyone who reaches the port may read it, which is why no label names
a person, a team or an environment.
"""

from __future__ import annotations

import hmac
import time

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from envhub.config import get_settings
from envhub.metrics import HTTP_REQUEST_DURATION
from envhub.queue.metrics import register_queue_depth

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER = "other"


def route_label(scope: Scope) -> str:
    """The template of the route that served ``scope``; ``other`` when none did."""
    route = scope.get("route")
    template = getattr(route, "path_format", None)
    return template if isinstance(template, str) and template else OTHER


def status_label(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status < 600 else OTHER


class RequestMetrics:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception before the response started: the server answers 500

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            method = str(scope.get("method", "")).upper()
            HTTP_REQUEST_DURATION.labels(
                route=route_label(scope),
                method=method if method in METHODS else OTHER,
                status=status_label(status),
            ).observe(time.perf_counter() - started)


def _authorized(request: Request) -> bool:
    expected = get_settings().metrics_token.get_secret_value()
    if not expected:
        return True
    scheme, _, given = (request.headers.get("authorization") or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected.encode())


def _queue_location() -> tuple[str, str]:
    settings = get_settings()
    return settings.redis_url, settings.queue_name


def mount(api: FastAPI) -> None:
    """Add ``/metrics`` and the request metrics to the app (and the queue's depth to the registry)."""
    register_queue_depth(_queue_location)

    @api.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        if not _authorized(request):
            return PlainTextResponse(
                "metrics need the token of ENVHUB_METRICS_TOKEN\n",
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    api.add_middleware(RequestMetrics)
