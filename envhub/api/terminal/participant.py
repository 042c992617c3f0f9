"""One socket attached to a terminal session: its outbound queue and its flow-control counters.

Each participant has its own sender task, so a slow socket only ever waits
for itself. Output is counted when queued (``enqueued``) and when the browser
says xterm has rendered it (``acked``); the difference is what this socket
still has in flight, and what flow control looks at.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from typing import Protocol

from envhub.services.authentication import Caller

log = logging.getLogger(__name__)

# One WebSocket message carries at most this much output (coalesced chunks).
MAX_MESSAGE = 64 * 1024
CLOSE_TIMEOUT = 5.0
_ids = itertools.count(1)


class Channel(Protocol):
    """The socket, as the session sees it (a Starlette WebSocket in production)."""

    async def send_bytes(self, data: bytes) -> None: ...

    async def send_text(self, data: str) -> None: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


class Participant:
    def __init__(self, *, client: str, caller: Caller, may_drive: bool, channel: Channel) -> None:
        self.id = f"p{next(_ids)}"
        self.client = client
        self.caller = caller  # how this socket signed in: re-checked while it stays open
        self.principal = caller.principal
        self.may_drive = may_drive
        self.channel = channel
        self.enqueued = 0
        self.acked = 0
        self.lagging = False  # skipped by live output until it catches up and is redrawn
        self.held = True  # a screen restore is being prepared: send nothing yet
        self.last_seen = time.monotonic()
        self.last_input = 0.0  # when this socket last typed (activity that keeps a session from idling)
        self.last_restore = 0.0
        self._queue: deque[bytes | str] = deque()
        self._wake = asyncio.Event()
        self._close: tuple[int, str] | None = None
        self._task: asyncio.Task[None] | None = None
        self.gone = False

    @property
    def name(self) -> str:
        return self.principal.name

    @property
    def unacked(self) -> int:
        return self.enqueued - self.acked

    def start(self) -> asyncio.Task[None]:
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._send_loop(), name=f"terminal-send-{self.id}")
        return self._task

    def output(self, data: bytes) -> None:
        self._queue.append(data)
        self.enqueued += len(data)
        if not self.held:
            self._wake.set()

    def control(self, text: str) -> None:
        self._queue.append(text)
        if not self.held:
            self._wake.set()

    def restore(self, head: list[str], screen: bytes) -> None:
        """Put ``head`` (control messages) and ``screen`` before everything queued, then send."""
        self._queue.appendleft(screen)
        self.enqueued += len(screen)
        for text in reversed(head):
            self._queue.appendleft(text)
        self.held = False
        self.lagging = False
        self.last_restore = time.monotonic()
        self._wake.set()

    def discard_output(self) -> None:
        """Drop queued output (a restore will redraw the screen instead)."""
        kept: deque[bytes | str] = deque()
        for item in self._queue:
            if isinstance(item, bytes):
                self.enqueued -= len(item)
            else:
                kept.append(item)
        self._queue = kept

    def ack(self, count: int) -> None:
        # Acks are cumulative; ignore stale or impossible ones.
        if self.acked < count <= self.enqueued:
            self.acked = count

    def close(self, code: int, reason: str = "", *, drain: bool = False, last: str | None = None) -> None:
        """Close the socket: after what is queued (``drain``), or right away after ``last``."""
        if self._close is None:
            self._close = (code, reason)
            if not drain:
                self._queue.clear()
            if last is not None:
                self._queue.append(last)
            self.held = False
            self._wake.set()

    async def _send_loop(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._queue and not self.held:
                    item = self._queue.popleft()
                    if isinstance(item, str):
                        await self.channel.send_text(item)
                        continue
                    if self._queue and isinstance(self._queue[0], bytes):
                        parts, size = [item], len(item)
                        while self._queue and isinstance(self._queue[0], bytes) and size < MAX_MESSAGE:
                            part = self._queue.popleft()
                            assert isinstance(part, bytes)
                            parts.append(part)
                            size += len(part)
                        item = b"".join(parts)
                    await self.channel.send_bytes(item)
                if self._close is not None and not self._queue:
                    with contextlib.suppress(Exception):
                        await self.channel.close(*self._close)
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the socket went away mid-send
            log.debug("terminal socket %s gone: %s", self.id, exc)
        finally:
            self.gone = True

    @property
    def done(self) -> asyncio.Task[None] | None:
        """The sender: once it has finished, the socket is closed or gone."""
        return self._task

    async def stop(self) -> None:
        """End the sender; one that is closing the socket gets a moment to finish."""
        if self._task is None or self._task.done():
            return
        if self._close is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(self._task), CLOSE_TIMEOUT)
        if not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
