"""envhub's API app for terminal tests, served by Granian as in production.

The one difference: a test may say who it is with an ``x-envhub-test-user``
header (a username), standing in for sign-in, which is not built yet. That
replaces ``principal_from_scope`` — envhub's own seam for "who is calling" —
and nothing else; without the header the real function answers.
"""

from __future__ import annotations

from sqlmodel import select
from starlette.types import Scope

from envhub.api import auth
from envhub.api.app import create_api
from envhub.api.terminal import routes
from envhub.domain.principals import Principal
from envhub.models import User
from envhub.models.db import session_scope

_real = auth.principal_from_scope


def principal_from_scope(scope: Scope) -> Principal | None:
    for key, value in scope.get("headers", []):
        if key.lower() == b"x-envhub-test-user":
            name = value.decode()
            if name == "anonymous":
                return None
            with session_scope() as session:
                user = session.exec(select(User).where(User.username == name)).first()
                return Principal(name=user.username, user_id=user.id) if user else None
    return _real(scope)


routes.principal_from_scope = principal_from_scope  # type: ignore[assignment]
app = create_api()
