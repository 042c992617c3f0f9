"""The FastAPI application around Reflex.

Reflex mounts itself inside this app (``rx.App(api_transformer=...)``), so
envhub's routes and middleware sit in front of the dashboard. From the
outside in: the local gateway (a request whose Host names an environment
never reaches envhub), the guard (host, origin, CSRF, body size, rate limits),
security headers, then envhub's routes or Reflex. Outside them all, request
latency is measured for ``/metrics`` (api/metrics.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import text

from envhub.api import errors, metrics, terminal
from envhub.api.activity import ActivityMiddleware
from envhub.api.auth import bearer_principal
from envhub.api.gateway import GatewayMiddleware
from envhub.api.git_credentials import router as git_credentials_router
from envhub.api.guard import GuardMiddleware
from envhub.api.headers import SecurityHeadersMiddleware
from envhub.api.routes_auth import router as auth_router
from envhub.api.v1 import router as v1_router
from envhub.api.webhooks import router as webhooks_router
from envhub.mcp import McpEndpoint, endpoint_of
from envhub.models.db import session_scope, warm


def _prepare(api: FastAPI) -> None:
    """What the first request after a start would otherwise pay for: the database driver imported
    and the server met, and every route's parameters and models built (FastAPI builds them on
    first use, about half a second for envhub's routes); the OpenAPI document comes with them."""
    warm()
    api.openapi()


@contextlib.asynccontextmanager
async def serving(api: FastAPI) -> AsyncIterator[None]:
    """While the app serves (its lifespan): MCP's session manager runs, and the app is prepared
    beside it (``_prepare``), so the first request does not wait for that. On the way out the
    terminals end, saying that envhub is restarting."""
    preparing = asyncio.create_task(asyncio.to_thread(_prepare, api))
    async with endpoint_of(api).run(), terminal.lifespan():
        yield
    await preparing


def create_api() -> FastAPI:
    # MCP at /mcp; its session manager runs while the app serves (envhub.py registers the same
    # lifespan with Reflex, which does not run a mounted app's own).
    mcp = McpEndpoint(identify=bearer_principal)
    api = FastAPI(
        title="envhub",
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/v1/openapi.json",
        lifespan=serving,
    )
    api.state.mcp = mcp
    errors.install(api)
    api.include_router(auth_router)
    api.include_router(v1_router)
    api.include_router(webhooks_router)
    # Environments themselves, not people: an environment's identity, not a token (git_credentials.py).
    api.include_router(git_credentials_router)

    @api.get("/healthz", include_in_schema=False)
    def healthz() -> JSONResponse:
        try:
            with session_scope() as session:
                session.exec(text("SELECT 1"))  # type: ignore[call-overload]
        except Exception:
            # The reason stays in the logs: it may name hosts or users.
            return JSONResponse({"status": "unhealthy", "database": "unreachable"}, status_code=503)
        return JSONResponse({"status": "ok"})

    terminal.mount(api)
    api.router.routes.append(mcp.route())

    # add_middleware wraps: the last one added is the outermost.
    api.add_middleware(ActivityMiddleware)
    api.add_middleware(SecurityHeadersMiddleware)
    api.add_middleware(GuardMiddleware)
    api.add_middleware(GatewayMiddleware)
    metrics.mount(api)  # /metrics, and request latency measured outermost
    return api
