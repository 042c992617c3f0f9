"""envhub's API app for terminal tests, served by Granian as in production.

It is the production app, signed in to as in production (tests/terminal/signin.py).
One knob: ``ENVHUB_TEST_EXEC_DELAY`` (seconds) makes the runtime port take
that long to start a shell, as a pod exec handshake with a slow cluster does,
so a test can act while a session is still opening.
"""

from __future__ import annotations

import os
import time
from typing import Any

from envhub import wiring
from envhub.api.app import create_api
from envhub.runtime.base import ExecSession, Runtime
from envhub.services import ports


class SlowExec:
    """The runtime port, with shells that take ``delay`` seconds to start."""

    def __init__(self, runtime: Runtime, delay: float) -> None:
        self._runtime, self._delay = runtime, delay

    def __getattr__(self, name: str) -> Any:
        return getattr(self._runtime, name)

    def exec(self, environment_id: int, *args: Any, **kwargs: Any) -> ExecSession:
        time.sleep(self._delay)
        return self._runtime.exec(environment_id, *args, **kwargs)


wiring.install()
_delay = float(os.environ.get("ENVHUB_TEST_EXEC_DELAY") or 0)
if _delay:
    _real = ports.runtime
    ports.runtime = lambda: SlowExec(_real(), _delay)  # type: ignore[assignment, return-value]

app = create_api()
