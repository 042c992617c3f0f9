"""The FastAPI application around Reflex.

Reflex mounts itself inside this app (``rx.App(api_transformer=...)``), so
envhub's routes and the local gateway sit in front of the dashboard: a request
whose Host names an environment never reaches Reflex.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import text

from envhub.api import terminal
from envhub.api.gateway import GatewayMiddleware
from envhub.models.db import session_scope


def create_api() -> FastAPI:
    api = FastAPI(title="envhub", docs_url=None, redoc_url=None, openapi_url="/api/v1/openapi.json")

    @api.get("/healthz", include_in_schema=False)
    def healthz() -> JSONResponse:
        try:
            with session_scope() as session:
                session.exec(text("SELECT 1"))  # type: ignore[call-overload]
        except Exception as exc:
            return JSONResponse({"status": "unhealthy", "database": str(exc)}, status_code=503)
        return JSONResponse({"status": "ok"})

    terminal.mount(api)
    api.add_middleware(GatewayMiddleware)
    return api
