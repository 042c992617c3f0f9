"""Every error a client sees: a status, and JSON ``{code, message, hint}``.

envhub's own errors carry their status (the registry in ``envhub/errors.py``);
FastAPI's validation errors and Starlette's HTTP errors get codes too, and
anything unexpected is a 500 with no detail (it is logged).
Bad input is always a 4xx with a code, never a 500.
"""

from __future__ import annotations

import html
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from envhub import errors as e

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def status_of(exc: e.EnvhubError) -> int:
    """The error's status from the registry in ``envhub.errors`` (every face uses the same)."""
    return exc.status


def body_of(exc: e.EnvhubError) -> dict[str, Any]:
    return {"code": exc.code, "message": exc.message, "hint": exc.hint, "details": exc.details}


def wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "") and request.url.path.startswith("/auth/")


_PAGE_STYLE = (
    "body{font-family:system-ui,sans-serif;background:#f8fafc;color:#0f172a;display:grid;"
    "place-items:center;min-height:100vh;margin:0}"
    "main{background:#fff;border:1px solid #e2e8f0;border-radius:12px;padding:32px;max-width:480px}"
    "code{background:#eef2ff;padding:2px 6px;border-radius:4px}a{color:#4f46e5}"
    "@media (prefers-color-scheme: dark){body{background:#0b1120;color:#e2e8f0}"
    "main{background:#111827;border-color:#1f2937}code{background:#1e1b4b}a{color:#a5b4fc}}"
)


def error_page(status: int, code: str, message: str, hint: str) -> HTMLResponse:
    """A plain page for browsers that end up on an /auth/ route with an error."""
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        "<title>Sign-in problem · envhub</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{_PAGE_STYLE}</style></head><body><main><h1>Could not sign you in</h1>"
        f"<p>{html.escape(message)}</p><p>{html.escape(hint)}</p>"
        f'<p>Error code: <code id="error-code">{html.escape(code)}</code></p>'
        '<p><a href="/sign-in">Back to sign-in</a></p></main></body></html>'
    )
    return HTMLResponse(body, status_code=status)


def respond(request: Request, exc: e.EnvhubError) -> Response:
    status = status_of(exc)
    headers = (
        {"Retry-After": str(exc.details.get("retry_after", 60))} if isinstance(exc, e.RateLimited) else None
    )
    if wants_html(request):
        response: Response = error_page(status, exc.code, exc.message, exc.hint)
        if headers:
            response.headers.update(headers)
        return response
    return JSONResponse(body_of(exc), status_code=status, headers=headers)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at the request's path.

    Starlette's 405 names the methods of the first route that matched the
    path only; FastAPI makes one route per method, so that would leave out
    the others (a GET and a POST on /api/v1/projects).
    """
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": "GET", "type": "http"})
        if match is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


def install(api: FastAPI) -> None:
    @api.exception_handler(e.EnvhubError)
    async def _envhub(request: Request, exc: e.EnvhubError) -> Response:
        if status_of(exc) >= 500:
            log.warning("%s %s failed: %s %s", request.method, request.url.path, exc.code, exc.message)
        return respond(request, exc)

    @api.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        error = e.invalid_request(exc.errors())
        return respond(request, error)

    @api.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if isinstance(exc.__cause__, e.EnvhubError):  # FastAPI wraps errors met while reading the body
            return respond(request, exc.__cause__)
        code = _HTTP_CODES.get(exc.status_code, "bad_request" if exc.status_code < 500 else "internal_error")
        message = str(exc.detail) if exc.detail else code.replace("_", " ")
        headers = exc.headers
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request))}
        return JSONResponse(
            {"code": code, "message": message, "hint": "", "details": {}},
            status_code=exc.status_code,
            headers=headers,
        )

    @api.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error in %s %s", request.method, request.url.path)
        internal = e.error_info("internal_error")
        return JSONResponse(
            {
                "code": internal.code,
                "message": "envhub hit an unexpected error",
                "hint": internal.hint,
                "details": {},
            },
            status_code=internal.status,
        )
