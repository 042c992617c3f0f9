"""Who is calling: the principal behind an HTTP request or WebSocket.

Every route and socket asks here, so sign-in (sessions, tokens) is decided in
one place. In the embedded single-user mode every caller is the local user.
"""

from __future__ import annotations

from starlette.types import Scope

from envhub.domain.principals import Principal
from envhub.models.db import session_scope
from envhub.services.identity import ensure_local_principal


def principal_from_scope(scope: Scope) -> Principal | None:
    """The principal of an ASGI ``http`` or ``websocket`` scope; None if anonymous."""
    with session_scope() as session:
        return ensure_local_principal(session)
