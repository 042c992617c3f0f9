"""A load balancer for tests: a TCP proxy that sends each new connection to the next backend in turn.

Plain round robin and no affinity, as a Kubernetes Service or a cloud load
balancer without sticky sessions does. It runs an asyncio loop in a thread of
its own. ``routed`` lists which backend each connection went to, and
``land_next_on(i)`` makes throwaway connections until backend ``i`` is next,
so a test can say which process a socket reaches without the proxy knowing
anything of terminals.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

from tests.support.net import free_port


class RoundRobin:
    def __init__(self, backends: list[str], port: int | None = None) -> None:
        self.backends = [(urlsplit(url).hostname or "", urlsplit(url).port or 80) for url in backends]
        self.port = port or free_port()
        self.url = f"http://localhost:{self.port}"
        self.routed: list[int] = []
        self._turn = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"round-robin-{self.port}")
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", self.port))
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()
            self._loop.run_until_complete(server.wait_closed())
            self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = self._turn
        self._turn = (self._turn + 1) % len(self.backends)
        self.routed.append(index)
        host, port = self.backends[index]
        try:
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except OSError:
            writer.close()  # a stopped backend: the client sees its connection refused, as from a dead pod
            return
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        for end in (writer, up_writer):
            end.close()

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        with contextlib.suppress(OSError, ConnectionError):
            if sink.can_write_eof():
                sink.write_eof()
            else:
                sink.close()

    @property
    def next_backend(self) -> int:
        return self._turn

    def land_next_on(self, index: int) -> None:
        """Open and drop connections until the next one goes to backend ``index``."""
        while self._turn != index:
            seen = len(self.routed)
            with socket.create_connection(("127.0.0.1", self.port)):
                pass
            while len(self.routed) == seen:  # the proxy accepts in its own thread
                threading.Event().wait(0.005)

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@contextlib.contextmanager
def round_robin(backends: list[str], port: int | None = None) -> Iterator[RoundRobin]:
    proxy = RoundRobin(backends, port)
    try:
        yield proxy
    finally:
        proxy.close()
