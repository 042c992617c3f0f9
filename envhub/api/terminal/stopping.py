"""Ending terminals while their sockets are still open, when the web process is told to stop.

Granian closes every open WebSocket as soon as its worker is signalled to
stop, before the application's lifespan shutdown runs: by then nobody on a
terminal can be told anything, and the browser sees a dropped connection
(1006) and retries against a shell that is gone. So the web process takes the
stop signals (SIGTERM, SIGINT) over on its event loop, runs its own step
first (end the shells held here, saying that envhub is restarting; send the
sockets relayed through here to reconnect elsewhere), then hands the signal on
to the server's own handler, which stops as before.

The server's handler is found in asyncio's table of signal handlers
(``loop._signal_handlers``, where ``loop.add_signal_handler`` keeps it):
there is no public way to read it. A loop without that table, or a server
that handles signals otherwise, is left alone; the lifespan shutdown still
ends the shells (and audits them), only without telling anyone.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# The step gets this long; then the server stops anyway (Kubernetes' grace period is longer).
STEP_TIMEOUT = 20.0


def before_stop(loop: asyncio.AbstractEventLoop, step: Callable[[], Awaitable[None]]) -> bool:
    """Run ``step`` when the process is signalled to stop, before the server's own handler.

    False when there was no server handler to go before (nothing is changed then).
    """
    handlers: Any = getattr(loop, "_signal_handlers", None)
    if not isinstance(handlers, dict):
        return False
    taken = False
    for signum in STOP_SIGNALS:
        previous = handlers.get(signum)
        if previous is None or getattr(previous, "_callback", None) is None:
            continue
        loop.add_signal_handler(signum, _first, loop, step, previous)
        taken = True
    return taken


def _first(loop: asyncio.AbstractEventLoop, step: Callable[[], Awaitable[None]], previous: Any) -> None:
    async def run() -> None:
        try:
            await asyncio.wait_for(step(), STEP_TIMEOUT)
        except Exception:
            log.exception("ending terminals before stopping failed")
        finally:
            previous._callback(*previous._args)

    task = loop.create_task(run(), name="terminal-stop")
    _running.add(task)
    task.add_done_callback(_running.discard)


_running: set[asyncio.Task[None]] = set()
