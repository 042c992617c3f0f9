"""Moving bytes between an exec stream and the event loop, fairly and with back-pressure.

Output is read in *turns* of at most ``budget`` bytes: a turn coalesces several
small PTY reads into one chunk (one WebSocket message instead of a dozen, which
is most of the throughput) but never more, so a session flooding output gets
one bounded turn per loop iteration and another session's keystroke echo waits
for a few turns at most instead of behind a megabyte. ``pause``/``resume`` stop
and restart reading; the session drives them from its flow control.

Two kinds, by what the runtime offers:

* :class:`FdPump` for sessions with a pollable descriptor (the local PTY): the
  loop watches the descriptor itself, no thread, input written non-blocking.
* :class:`ThreadPump` for the rest (Kubernetes exec over its own WebSocket):
  a reader thread hands chunks to the loop, at most a few in flight, and a
  writer thread keeps input and resizes in order without blocking the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable

from envhub.runtime.base import ExecSession, PollableExecSession

log = logging.getLogger(__name__)

DEFAULT_BUDGET = 16 * 1024
# What all streaming sessions together may read in one loop turn. One session
# alone gets big turns (throughput); several share it (fairness).
TURN_BYTES = 64 * 1024
MIN_TURN = 4 * 1024
# A tty hands out at most its 4 KiB line buffer per read. A turn with less
# than that left ends rather than read again: a read of the few bytes left
# would wait for the kernel's tty worker to refill the buffer, for nothing.
MIN_READ = 4 * 1024
# A session that filled a turn this recently is streaming.
STREAMING_WINDOW = 0.1
# How long streaming sessions wait, at most, for the output a keystroke
# elsewhere causes (the echo, at least) to be read before they read again.
# Unloaded, an echo is back in a quarter of a millisecond.
ECHO_WINDOW = 0.003
# Input nobody reads (a huge paste into a program that is not reading) is
# dropped past this, rather than held in memory.
MAX_INPUT_BACKLOG = 4 * 1024 * 1024

OutputHandler = Callable[[bytes], None]
EndHandler = Callable[[], None]


class Streams:
    """Who reads next on this event loop: the output a keystroke causes first, floods in bounded turns.

    A session that filled its last turn recently is *streaming*; the streaming
    sessions share :data:`TURN_BYTES` per loop turn, so each gets a bounded
    share however many there are.

    A keystroke (:meth:`typed`) makes its session *awaited* until its output
    comes back (:meth:`answered`), for at most :data:`ECHO_WINDOW`. While any
    other session is awaited, a streaming session that becomes readable does
    not read: it is *parked* (:meth:`park`). When nothing is awaited any more
    (or the window has passed), the parked sessions take their turns, one per
    loop iteration (:meth:`enqueue`), so a keystroke that arrives meanwhile
    waits behind one flood's turn at most.

    A flood therefore gives up a few milliseconds per keystroke, not its
    rate: the echo finds the loop and the CPUs free (every flood turn also
    wakes the flood's writer, the kernel's tty worker and the flood's socket),
    and the floods go on at full pace between keystrokes. Sessions that do
    not fill their turns (a prompt, an editor) are never parked.
    """

    def __init__(self) -> None:
        self._last_full: dict[int, float] = {}
        self._awaited: dict[int, float] = {}  # session -> when its keystroke stops being waited for
        self._parked: list[Pump] = []
        self._release: asyncio.TimerHandle | None = None
        self._queue: deque[Pump] = deque()
        self._runner: tuple[asyncio.AbstractEventLoop, asyncio.Handle] | None = None

    def _streaming(self, key: int, now: float) -> bool:
        return now - self._last_full.get(key, -1.0) < STREAMING_WINDOW

    def _streams(self, now: float) -> int:
        return sum(1 for at in self._last_full.values() if now - at < STREAMING_WINDOW)

    def _awaited_elsewhere(self, key: int, now: float) -> bool:
        return any(k != key and now < until for k, until in self._awaited.items())

    def budget(self, key: int, now: float) -> int:
        active = self._streams(now) + (0 if self._streaming(key, now) else 1)
        return max(MIN_TURN, TURN_BYTES // max(1, active))

    def parks(self, key: int, now: float) -> bool:
        """Whether the session, readable now, waits for a keystroke's output elsewhere first."""
        return self._streaming(key, now) and self._awaited_elsewhere(key, now)

    def park(self, pump: Pump, loop: asyncio.AbstractEventLoop) -> None:
        self._parked.append(pump)
        if self._release is None:
            self._release = loop.call_later(ECHO_WINDOW, self._unpark, loop)

    def typed(self, key: int, now: float) -> None:
        self._awaited[key] = now + ECHO_WINDOW

    def answered(self, key: int, loop: asyncio.AbstractEventLoop) -> None:
        """The session's output came: streams parked for it may go on once nothing else is awaited."""
        if key not in self._awaited:  # the common case, on every turn of every session
            return
        del self._awaited[key]
        now = time.monotonic()
        if self._parked and not any(now < until for until in self._awaited.values()):
            self._unpark(loop)

    def _unpark(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._release is not None:
            self._release.cancel()
            self._release = None
        now = time.monotonic()
        self._awaited = {k: until for k, until in self._awaited.items() if now < until}
        parked, self._parked = self._parked, []
        for pump in parked:
            self.enqueue(pump, loop)

    def enqueue(self, pump: Pump, loop: asyncio.AbstractEventLoop) -> None:
        """Run ``pump``'s turn later: one such turn per loop iteration, in order."""
        self._queue.append(pump)
        if self._runner is None or self._runner[0] is not loop:
            self._runner = (loop, loop.call_soon(self._run, loop))

    def dequeue(self, pump: Pump) -> None:
        with contextlib.suppress(ValueError):
            self._queue.remove(pump)
        with contextlib.suppress(ValueError):
            self._parked.remove(pump)

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        self._runner = None
        if self._queue:
            self._queue.popleft().queued_turn()
        if self._queue:
            self._runner = (loop, loop.call_soon(self._run, loop))

    def filled(self, key: int, now: float) -> None:
        self._last_full[key] = now

    def forget(self, key: int) -> None:
        self._last_full.pop(key, None)
        self._awaited.pop(key, None)


STREAMS = Streams()
_keys = itertools.count(1)


class Pump:
    """Common interface; see the module docstring."""

    def __init__(self, on_output: OutputHandler, on_end: EndHandler, budget: int) -> None:
        self.key = next(_keys)  # this session, to the scheduler (STREAMS)
        self._on_output = on_output
        self._on_end = on_end
        self.budget = budget
        self.paused = False
        self.ended = False

    def start(self) -> None:
        raise NotImplementedError

    def pause(self) -> None:
        raise NotImplementedError

    def resume(self) -> None:
        raise NotImplementedError

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def resize(self, cols: int, rows: int) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def queued_turn(self) -> None:
        """The turn :meth:`Streams.park` or :meth:`Streams.enqueue` held back."""
        raise NotImplementedError

    def _finish(self) -> None:
        if not self.ended:
            self.ended = True
            self._on_end()


def make_pump(
    session: ExecSession,
    loop: asyncio.AbstractEventLoop,
    *,
    on_output: OutputHandler,
    on_end: EndHandler,
    budget: int = DEFAULT_BUDGET,
) -> Pump:
    if isinstance(session, PollableExecSession):
        return FdPump(session, loop, on_output, on_end, budget)
    return ThreadPump(session, loop, on_output, on_end, budget)


class FdPump(Pump):
    def __init__(
        self,
        session: PollableExecSession,
        loop: asyncio.AbstractEventLoop,
        on_output: OutputHandler,
        on_end: EndHandler,
        budget: int,
    ) -> None:
        super().__init__(on_output, on_end, budget)
        self._session = session
        self._loop = loop
        self._fd = session.fileno()
        self._reading = False
        self._queued = False  # the next turn waits (Streams.park, Streams.enqueue)
        self._backlog: deque[bytes] = deque()
        self._backlog_size = 0

    def start(self) -> None:
        self._watch(True)

    def _watch(self, on: bool) -> None:
        idle = not self.paused and not self._queued
        if on and not self._reading and not self.ended and idle:
            self._loop.add_reader(self._fd, self._readable)
            self._reading = True
        elif not on and self._reading:
            self._loop.remove_reader(self._fd)
            self._reading = False

    def _readable(self) -> None:
        now = time.monotonic()
        if STREAMS.parks(self.key, now):
            self._watch(False)
            self._queued = True
            STREAMS.park(self, self._loop)
        else:
            self._turn(now)

    def queued_turn(self) -> None:
        self._queued = False
        if not self.ended and not self.paused:
            self._turn(time.monotonic())
            self._watch(True)

    def _turn(self, now: float) -> None:
        chunks: list[bytes] = []
        total, eof, drained = 0, False, False
        budget = STREAMS.budget(self.key, now)
        while budget - total >= MIN_READ:
            try:
                data = self._session.read_nowait(budget - total)
            except OSError:
                log.exception("reading the terminal failed")
                data = b""
            if data is None:
                drained = True
                break
            if not data:
                eof = True
                break
            chunks.append(data)
            total += len(data)
        if not drained and not eof:
            STREAMS.filled(self.key, now)
        if chunks:
            self._on_output(chunks[0] if len(chunks) == 1 else b"".join(chunks))
            STREAMS.answered(self.key, self._loop)
        if eof:
            self._watch(False)
            self._finish()

    def pause(self) -> None:
        self.paused = True
        self._watch(False)

    def resume(self) -> None:
        self.paused = False
        self._watch(True)

    def write(self, data: bytes) -> None:
        if self.ended or not data:
            return
        STREAMS.typed(self.key, time.monotonic())
        if not self._backlog:
            try:
                taken = self._session.write_nowait(data)
            except OSError:
                return
            data = data[taken:]
            if not data:
                return
            self._loop.add_writer(self._fd, self._writable)
        if self._backlog_size + len(data) > MAX_INPUT_BACKLOG:
            log.warning("terminal input backlog full; dropping %d bytes", len(data))
            return
        self._backlog.append(data)
        self._backlog_size += len(data)

    def _writable(self) -> None:
        while self._backlog:
            chunk = self._backlog[0]
            try:
                taken = self._session.write_nowait(chunk)
            except OSError:
                self._backlog.clear()
                break
            self._backlog_size -= taken
            if taken < len(chunk):
                self._backlog[0] = chunk[taken:]
                return
            self._backlog.popleft()
        self._loop.remove_writer(self._fd)

    def resize(self, cols: int, rows: int) -> None:
        if not self.ended:
            with contextlib.suppress(OSError):
                self._session.resize(cols, rows)

    def stop(self) -> None:
        self._watch(False)
        if self._queued:
            STREAMS.dequeue(self)
            self._queued = False
        STREAMS.forget(self.key)
        if self._backlog:
            self._loop.remove_writer(self._fd)
            self._backlog.clear()
        self.ended = True


class ThreadPump(Pump):
    # Chunks handed to the loop and not processed yet; bounds memory when the
    # loop is busier than the stream.
    IN_FLIGHT = 4
    READ_TIMEOUT = 0.25

    def __init__(
        self,
        session: ExecSession,
        loop: asyncio.AbstractEventLoop,
        on_output: OutputHandler,
        on_end: EndHandler,
        budget: int,
    ) -> None:
        super().__init__(on_output, on_end, budget)
        self._session = session
        self._loop = loop
        self._running = threading.Event()
        self._stopped = threading.Event()
        self._slots = threading.Semaphore(self.IN_FLIGHT)
        self._held: list[bytes] = []  # read, and parked behind a keystroke elsewhere (Streams.park)
        self._inbox: queue.SimpleQueue[tuple[str, bytes | tuple[int, int]] | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._read_loop, name="envhub-terminal-read", daemon=True),
            threading.Thread(target=self._write_loop, name="envhub-terminal-write", daemon=True),
        ]

    def start(self) -> None:
        self._running.set()
        for thread in self._threads:
            thread.start()

    def _read_loop(self) -> None:
        while not self._stopped.is_set():
            self._running.wait(0.5)
            if not self._running.is_set() or not self._slots.acquire(timeout=0.5):
                continue
            try:
                data = self._session.read(self.budget, timeout=self.READ_TIMEOUT)
            except TimeoutError:
                self._slots.release()
                continue
            except Exception:
                if not self._stopped.is_set():
                    log.exception("reading the exec stream failed")
                data = b""
            if not data:
                self._slots.release()
                with contextlib.suppress(RuntimeError):  # the loop is closing
                    self._loop.call_soon_threadsafe(self._finish)
                return
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._deliver, data)

    def _deliver(self, data: bytes) -> None:
        if self.ended:
            self._slots.release()
            return
        now = time.monotonic()
        if len(data) >= MIN_READ:  # a full read: the stream has more waiting
            STREAMS.filled(self.key, now)
        if self._held or STREAMS.parks(self.key, now):
            # Its slot stays taken: the reader stops after IN_FLIGHT chunks.
            if not self._held:
                STREAMS.park(self, self._loop)
            self._held.append(data)
            return
        self._hand_over(data)

    def queued_turn(self) -> None:
        held, self._held = self._held, []
        for data in held:
            self._hand_over(data)

    def _hand_over(self, data: bytes) -> None:
        self._slots.release()
        if not self.ended:
            self._on_output(data)
            STREAMS.answered(self.key, self._loop)

    def _write_loop(self) -> None:
        while True:
            item = self._inbox.get()
            if item is None:
                return
            kind, value = item
            try:
                if kind == "input":
                    assert isinstance(value, bytes)
                    self._session.write(value)
                else:
                    assert isinstance(value, tuple)
                    self._session.resize(*value)
            except Exception as exc:
                log.info("writing to the exec stream failed: %s", exc)

    def pause(self) -> None:
        self.paused = True
        self._running.clear()

    def resume(self) -> None:
        self.paused = False
        self._running.set()

    def write(self, data: bytes) -> None:
        if not self.ended and data:
            STREAMS.typed(self.key, time.monotonic())
            self._inbox.put(("input", data))

    def resize(self, cols: int, rows: int) -> None:
        if not self.ended:
            self._inbox.put(("resize", (cols, rows)))

    def stop(self) -> None:
        self.ended = True
        if self._held:
            STREAMS.dequeue(self)
            self._held.clear()
        STREAMS.forget(self.key)
        self._stopped.set()
        self._running.set()
        self._inbox.put(None)
