"""The browser terminal: a WebSocket bridge from xterm.js to an exec stream.

``routes`` authenticates the socket and asks the service layer; ``manager``
keeps sessions by their client-generated id; ``session`` owns one shell, its
participants and flow control; ``pump`` reads the exec stream fairly;
``screenlog``/``emulator`` restore the screen on reattach; ``recording``
writes asciicast v2; ``relay`` carries a socket to the web replica holding
its session.
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from envhub.api.terminal import relay, stopping
from envhub.api.terminal.manager import manager
from envhub.api.terminal.routes import mount


@asynccontextmanager
async def lifespan() -> AsyncIterator[None]:
    """While the web process serves. When it is told to stop, and again on the way out, end
    every shell held here (audited, and its people told that envhub is restarting), then send
    the sockets relayed through here to reconnect elsewhere (``stopping.py``)."""
    stopping.before_stop(asyncio.get_running_loop(), _stop)
    yield
    await _stop()


async def _stop() -> None:
    await manager.shutdown()
    await relay.shutdown()


__all__ = ["lifespan", "mount"]
