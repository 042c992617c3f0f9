"""Real servers on loopback for tests: any ASGI app (granian, as in production) in a thread."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

from granian.constants import Interfaces
from granian.server.embed import Server

from tests.support.net import free_port, port_open
from tests.support.waiting import wait_for

logging.getLogger("granian").setLevel(logging.ERROR)


@contextlib.contextmanager
def serve_asgi(app: Any, port: int | None = None, address: str = "127.0.0.1") -> Iterator[int]:
    """Serve ``app`` over real HTTP/WebSocket on ``address`` (``port``, else a free one); yields the port."""
    port = port or free_port()
    loop = asyncio.new_event_loop()
    server = Server(app, address=address, port=port, interface=Interfaces.ASGINL, log_enabled=False)

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.serve())

    thread = threading.Thread(target=run, name=f"asgi-{port}", daemon=True)
    thread.start()
    try:
        reach = "127.0.0.1" if address in ("0.0.0.0", "127.0.0.1") else address
        wait_for(lambda: port_open(port, reach), timeout=30, what=f"the ASGI server on port {port}")
        yield port
    finally:
        loop.call_soon_threadsafe(server.stop)
        thread.join(15)
        if not thread.is_alive():
            loop.close()
