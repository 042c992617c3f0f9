"""The browser terminal: a WebSocket bridge from xterm.js to an exec stream.

``routes`` authenticates the socket and asks the service layer; ``manager``
keeps sessions by their client-generated id; ``session`` owns one shell, its
participants and flow control; ``pump`` reads the exec stream fairly;
``screenlog``/``emulator`` restore the screen on reattach; ``recording``
writes asciicast v2.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from envhub.api.terminal.manager import manager
from envhub.api.terminal.routes import mount


@asynccontextmanager
async def lifespan() -> AsyncIterator[None]:
    """While the web process serves; on the way out, end every shell (and audit it)."""
    yield
    await manager.shutdown()


__all__ = ["lifespan", "mount"]
