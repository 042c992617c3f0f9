"""Who is calling: the principal behind an HTTP request or WebSocket.

Every route and socket asks here, and here asks ``services/authentication``
(which the dashboard's ``ui/state.py`` asks too), so sign-in is decided in one
place: a bearer token (personal or agent), else the session cookie.
"""

from __future__ import annotations

from fastapi import Request
from starlette.types import Scope

from envhub.api.clients import client_ip, header
from envhub.domain.principals import Principal
from envhub.errors import Unauthenticated
from envhub.models.db import session_scope
from envhub.services.authentication import Caller, authenticate, bearer_token, principal_for_token


def caller_from_scope(scope: Scope) -> Caller | None:
    with session_scope() as session:
        return authenticate(
            session,
            cookie_header=header(scope, b"cookie"),
            authorization=header(scope, b"authorization"),
            source_ip=client_ip(scope),
            user_agent=header(scope, b"user-agent"),
        )


def bearer_authenticates(scope: Scope) -> bool:
    """Whether the request's ``Authorization: Bearer`` token is a live token (blocking)."""
    token = bearer_token(header(scope, b"authorization"))
    if token is None:
        return False
    with session_scope() as session:
        return principal_for_token(session, token, source_ip=client_ip(scope)) is not None


def bearer_principal(scope: Scope) -> Principal | None:
    """The principal of the request's ``Authorization: Bearer`` token alone, cookies ignored (blocking).

    For endpoints only programs use (MCP): they carry a token, and a cookie
    there would be an ambient credential another site could make a browser send.
    """
    with session_scope() as session:
        caller = authenticate(
            session,
            cookie_header=None,
            authorization=header(scope, b"authorization"),
            source_ip=client_ip(scope),
            user_agent=header(scope, b"user-agent"),
        )
    return caller.principal if caller else None


def principal_from_scope(scope: Scope) -> Principal | None:
    """The principal of an ASGI ``http`` or ``websocket`` scope; None if anonymous.

    Blocking (database, and now and then the OpenID provider): call it from a
    worker thread in async code.
    """
    caller = caller_from_scope(scope)
    return caller.principal if caller else None


def require_principal(request: Request) -> Principal:
    """FastAPI dependency: the caller, or 401 ``unauthenticated``."""
    caller = caller_from_scope(request.scope)
    if caller is None:
        raise Unauthenticated("sign in, or send 'Authorization: Bearer <token>'")
    request.state.caller = caller
    return caller.principal
