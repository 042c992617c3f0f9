"""REST calls on an environment count as its activity (CLI and programs: services/activity.py).

Only calls that succeeded: a 2xx or 3xx answer means the caller was let in, so
nobody keeps an environment awake by knocking on its id. Putting it to sleep
is no sign of use.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from envhub.services import activity

_ENVIRONMENT_PATH = re.compile(r"^/api/v1/environments/(\d{1,12})(?:/(?P<rest>.*))?$")
_NOT_ACTIVITY = frozenset({"sleep"})


def environment_of(path: str) -> int | None:
    """The environment a REST path acts on, when the call is a sign of use."""
    match = _ENVIRONMENT_PATH.match(path)
    if match is None or (match.group("rest") or "") in _NOT_ACTIVITY:
        return None
    return int(match.group(1))


class ActivityMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        environment_id = environment_of(scope["path"]) if scope["type"] == "http" else None
        if environment_id is None:
            await self.app(scope, receive, send)
            return

        async def noting(message: Message) -> None:
            if message["type"] == "http.response.start" and 200 <= int(message["status"]) < 400:
                activity.note(environment_id)
            await send(message)

        await self.app(scope, receive, noting)
