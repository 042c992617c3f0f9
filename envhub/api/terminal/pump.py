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
# While someone types in another session: a streaming session's turn, and what
# all streaming sessions together may read per second (some 13,000 lines a
# second, far more than anyone can read, and little enough CPU that the
# typist's echo rarely finds one busy: measured on two cores, 4 MiB/s let
# four floods double the echo's p99, 1 MiB/s adds less than half).
TYPING_TURN = 32 * 1024
TYPING_RATE = 1024 * 1024
STREAMING_WINDOW = 0.1
INTERACTIVE_WINDOW = 0.25
# Input nobody reads (a huge paste into a program that is not reading) is
# dropped past this, rather than held in memory.
MAX_INPUT_BACKLOG = 4 * 1024 * 1024

OutputHandler = Callable[[bytes], None]
EndHandler = Callable[[], None]


class Streams:
    """Sizes every session's turn and paces floods: fair shares while several stream, and keystrokes first.

    A session that filled its last turn recently is *streaming*. The streaming
    sessions share :data:`TURN_BYTES` per loop turn. While someone is typing in
    another session (input within :data:`INTERACTIVE_WINDOW`), streams yield:

    * their turns wait in line (:meth:`enqueue`), one per loop iteration, so
      keystrokes, echoes and their sends never wait behind several floods'
      turns at once;
    * each reads at most :data:`TYPING_TURN`, then waits (:meth:`hold`) so
      that together they read no more than :data:`TYPING_RATE`. Small turns
      alone are not enough: every turn also wakes the flood's writer, the
      kernel's tty worker and the flood's socket, and with the CPUs busy with
      floods the typist's echo waits for a CPU at every hop. Paced, the floods
      leave the CPUs mostly idle and the echo comes back at once.

    They resume their full pace when the typing stops. Sessions that do not
    fill their turns (a prompt, an editor) never yield.
    """

    def __init__(self) -> None:
        self._last_full: dict[int, float] = {}
        self._last_input: dict[int, float] = {}
        self._queue: deque[FdPump] = deque()
        self._runner: tuple[asyncio.AbstractEventLoop, asyncio.Handle] | None = None

    def _streaming(self, key: int, now: float) -> bool:
        return now - self._last_full.get(key, -1.0) < STREAMING_WINDOW

    def _typing_elsewhere(self, key: int, now: float) -> bool:
        return any(k != key and now - at < INTERACTIVE_WINDOW for k, at in self._last_input.items())

    def _streams(self, now: float) -> int:
        return sum(1 for at in self._last_full.values() if now - at < STREAMING_WINDOW)

    def budget(self, key: int, now: float) -> int:
        streaming = self._streaming(key, now)
        if streaming and self._typing_elsewhere(key, now):
            return TYPING_TURN
        active = self._streams(now) + (0 if streaming else 1)
        return max(MIN_TURN, TURN_BYTES // max(1, active))

    def yields(self, key: int, now: float) -> bool:
        """Whether the session's next turn waits in line behind everything else the loop has to do."""
        return self._streaming(key, now) and self._typing_elsewhere(key, now)

    def enqueue(self, pump: FdPump, loop: asyncio.AbstractEventLoop) -> None:
        """Run ``pump``'s turn later: one such turn per loop iteration, in order."""
        self._queue.append(pump)
        if self._runner is None or self._runner[0] is not loop:
            self._runner = (loop, loop.call_soon(self._run, loop))

    def dequeue(self, pump: FdPump) -> None:
        with contextlib.suppress(ValueError):
            self._queue.remove(pump)

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        self._runner = None
        if self._queue:
            self._queue.popleft().queued_turn()
        if self._queue:
            self._runner = (loop, loop.call_soon(self._run, loop))

    def hold(self, key: int, now: float, size: int) -> float:
        """Seconds a session that just read ``size`` bytes waits before its next turn."""
        if size <= 0 or not self._streaming(key, now) or not self._typing_elsewhere(key, now):
            return 0.0
        return size * self._streams(now) / TYPING_RATE

    def filled(self, key: int, now: float) -> None:
        self._last_full[key] = now

    def typed(self, key: int, now: float) -> None:
        self._last_input[key] = now

    def forget(self, key: int) -> None:
        self._last_full.pop(key, None)
        self._last_input.pop(key, None)


STREAMS = Streams()


class Pump:
    """Common interface; see the module docstring."""

    def __init__(self, on_output: OutputHandler, on_end: EndHandler, budget: int) -> None:
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
        self._held: asyncio.TimerHandle | None = None  # paced: the next turn waits for this timer
        self._queued = False  # the next turn waits in line (Streams.enqueue)
        self._backlog: deque[bytes] = deque()
        self._backlog_size = 0

    def start(self) -> None:
        self._watch(True)

    def _watch(self, on: bool) -> None:
        idle = not self.paused and self._held is None and not self._queued
        if on and not self._reading and not self.ended and idle:
            self._loop.add_reader(self._fd, self._readable)
            self._reading = True
        elif not on and self._reading:
            self._loop.remove_reader(self._fd)
            self._reading = False

    def _readable(self) -> None:
        now = time.monotonic()
        if STREAMS.yields(self._fd, now):
            self._watch(False)
            self._queued = True
            STREAMS.enqueue(self, self._loop)
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
        budget = STREAMS.budget(self._fd, now)
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
            STREAMS.filled(self._fd, now)
        if chunks:
            self._on_output(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        if eof:
            self._watch(False)
            self._finish()
            return
        hold = STREAMS.hold(self._fd, now, total)
        if hold > 0 and self._held is None and not self.ended:
            self._watch(False)
            self._held = self._loop.call_later(hold, self._release)

    def _release(self) -> None:
        self._held = None
        self._watch(True)

    def pause(self) -> None:
        self.paused = True
        self._watch(False)

    def resume(self) -> None:
        self.paused = False
        self._watch(True)

    def write(self, data: bytes) -> None:
        if self.ended or not data:
            return
        STREAMS.typed(self._fd, time.monotonic())
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
        if self._held is not None:
            self._held.cancel()
            self._held = None
        if self._queued:
            STREAMS.dequeue(self)
            self._queued = False
        STREAMS.forget(self._fd)
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
        self._slots.release()
        if not self.ended:
            self._on_output(data)

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
            self._inbox.put(("input", data))

    def resize(self, cols: int, rows: int) -> None:
        if not self.ended:
            self._inbox.put(("resize", (cols, rows)))

    def stop(self) -> None:
        self.ended = True
        self._stopped.set()
        self._running.set()
        self._inbox.put(None)
