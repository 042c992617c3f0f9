"""``/auth/*``: signing in and out, and the device authorization endpoints for the CLI."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from envhub.api.auth import caller_from_scope
from envhub.api.clients import client_ip
from envhub.api.pages import notice_page
from envhub.config import AuthMode, get_settings
from envhub.errors import EnvhubError, ValidationFailed
from envhub.models.db import session_scope
from envhub.services import device, signin, url_access
from envhub.services.authentication import cookie_value
from envhub.services.sessions import login_cookie_name, session_cookie_name
from envhub.services.signin import ENVIRONMENT_ACCESS_PREFIX

router = APIRouter(prefix="/auth", include_in_schema=False)


def _origin(request: Request) -> tuple[str, str]:
    return client_ip(request.scope), request.headers.get("user-agent", "")[:300]


def _set_cookie(response: Response, name: str, value: str, *, max_age: int) -> None:
    settings = get_settings()
    response.set_cookie(
        name, value, max_age=max_age, path="/", httponly=True, secure=settings.secure_cookies, samesite="lax"
    )


def _clear_cookie(response: Response, name: str) -> None:
    settings = get_settings()
    response.delete_cookie(name, path="/", httponly=True, secure=settings.secure_cookies, samesite="lax")


def _signed_in(token: str, next_path: str) -> RedirectResponse:
    settings = get_settings()
    response = RedirectResponse(next_path, status_code=303)
    _set_cookie(response, session_cookie_name(settings), token, max_age=int(settings.session_max_age))
    _clear_cookie(response, login_cookie_name(settings))
    return response


async def form_fields(request: Request) -> dict[str, str]:
    """An application/x-www-form-urlencoded body (OAuth endpoints, sign-out form)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise ValidationFailed("send the fields as application/x-www-form-urlencoded")
    parsed = parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
    return {key: values[0] for key, values in parsed.items() if values}


@router.get("/login")
def login(request: Request, next: str = "/") -> Response:
    if get_settings().auth_mode is AuthMode.local:
        return RedirectResponse("/sign-in", status_code=303)
    started = signin.begin_oidc(next_path=next)
    response = RedirectResponse(started.redirect_to, status_code=303)
    _set_cookie(response, login_cookie_name(), started.login_cookie, max_age=signin.LOGIN_COOKIE_SECONDS)
    return response


@router.get("/callback")
def callback(request: Request) -> Response:
    ip, agent = _origin(request)
    params = {key: value[:4000] for key, value in request.query_params.items()}
    cookies = request.headers.get("cookie")
    with session_scope() as session:
        done = signin.finish_oidc(
            session,
            params=params,
            login_cookie=cookie_value(cookies, login_cookie_name()),
            replaces=cookie_value(cookies, session_cookie_name()),
            source_ip=ip,
            user_agent=agent,
        )
    return _signed_in(done.session_token, done.next_path)


@router.get("/local/{token}")
def local_link(request: Request, token: str) -> Response:
    ip, agent = _origin(request)
    with session_scope() as session:
        done = signin.use_login_link(
            session,
            token=token[:200],
            replaces=cookie_value(request.headers.get("cookie"), session_cookie_name()),
            source_ip=ip,
            user_agent=agent,
        )
    return _signed_in(done.session_token, done.next_path)


@router.get("/environment/{environment_id}")
def environment_access(
    request: Request,
    environment_id: int,
    next: str = "/",
    port: Annotated[int | None, Query(ge=1, le=65535)] = None,
) -> Response:
    """Carry the person's envhub sign-in over to an environment whose URL needs it.

    The gateway sends browsers without a pass here; signed in, they go back
    to the environment's host (or its forwarded ``port``'s) with a one-minute
    ticket (services/url_access.py).
    """
    query = {"next": next[:2000], **({"port": str(port)} if port is not None else {})}
    back = f"{ENVIRONMENT_ACCESS_PREFIX}{environment_id}?{urlencode(query)}"
    caller = caller_from_scope(request.scope)
    if caller is None or caller.session_hash is None:  # a browser comes with its session, not a token
        return RedirectResponse(f"/sign-in?{urlencode({'next': back})}", status_code=303)
    try:
        with session_scope() as session:
            target = url_access.grant(
                session=session,
                actor=caller.principal,
                session_hash=caller.session_hash,
                environment_id=environment_id,
                next_path=next,
                port=port,
            )
    except EnvhubError as exc:
        return notice_page(exc.status, "Cannot open this environment", exc.message, hint=exc.hint)
    return RedirectResponse(target, status_code=303)


@router.post("/logout")
def logout(request: Request) -> Response:
    """Sign out (CSRF-checked by the guard: a form field or header carries the token)."""
    ip, agent = _origin(request)
    with session_scope() as session:
        target = signin.sign_out(
            session,
            token=cookie_value(request.headers.get("cookie"), session_cookie_name()),
            source_ip=ip,
            user_agent=agent,
        )
    response = RedirectResponse(target, status_code=303)
    _clear_cookie(response, session_cookie_name())
    return response


# -- RFC 8628 device authorization ------------------------------------------------


def _oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    # The RFC's field names for OAuth clients, and envhub's own code for everyone else.
    body: dict[str, Any] = {
        "error": error,
        "error_description": description,
        "code": f"device_{error}",
        "message": description,
    }
    return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


@router.post("/device/code")
async def device_code(request: Request) -> Response:
    fields = await form_fields(request)

    def begin() -> device.DeviceStart:
        with session_scope() as session:
            return device.start(
                session, client_id=fields.get("client_id", ""), scope=fields.get("scope", "read")
            )

    started = await run_in_threadpool(begin)
    return JSONResponse(
        {
            "device_code": started.device_code,
            "user_code": started.user_code,
            "verification_uri": started.verification_uri,
            "verification_uri_complete": started.verification_uri_complete,
            "expires_in": started.expires_in,
            "interval": started.interval,
        },
        headers={"Cache-Control": "no-store"},
    )


@router.post("/device/token")
async def device_token(request: Request) -> Response:
    fields = await form_fields(request)
    if fields.get("grant_type") != "urn:ietf:params:oauth:grant-type:device_code":
        return _oauth_error("unsupported_grant_type", "only the device_code grant is served here")

    def redeem() -> tuple[str, int, str]:
        with session_scope() as session:
            token, row = device.redeem(
                session,
                device_code=fields.get("device_code", "")[:200],
                client_id=fields.get("client_id", "")[:100],
            )
            return token, int((row.expires_at - row.created_at).total_seconds()), " ".join(row.scopes)

    try:
        token, expires_in, scope = await run_in_threadpool(redeem)
    except device.DeviceFlowError as exc:
        return _oauth_error(exc.error, exc.description)
    return JSONResponse(
        {"access_token": token, "token_type": "Bearer", "expires_in": expires_in, "scope": scope},
        headers={"Cache-Control": "no-store"},
    )
