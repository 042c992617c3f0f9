"""Fair turns: the output a keystroke causes goes first, floods keep their pace, flow control still wins."""

from __future__ import annotations

import asyncio
import os
import select

import pytest

from envhub.api.terminal import pump
from envhub.api.terminal.pump import ECHO_WINDOW, MIN_TURN, TURN_BYTES, FdPump, Streams, ThreadPump
from tests.support.loops import run_in_fresh_loop


def test_a_flood_parks_only_while_a_keystroke_elsewhere_awaits_its_output() -> None:
    streams, now = Streams(), 100.0
    streams.filled(1, now)  # session 1 floods
    assert streams.budget(1, now) == TURN_BYTES
    assert not streams.parks(1, now)

    streams.typed(1, now)  # typing into the flood itself (Ctrl-C) does not hold it back
    assert not streams.parks(1, now)

    streams.typed(2, now)  # someone types in session 2
    assert streams.parks(1, now)
    assert not streams.parks(2, now)  # the typist's session is never parked
    assert not streams.parks(3, now)  # nor is a session that does not stream (a prompt, an editor)
    assert not streams.parks(1, now + ECHO_WINDOW)  # a keystroke is waited for a few milliseconds at most

    streams.filled(3, now)  # floods share a turn's bytes, each a bounded part
    assert streams.budget(1, now) == TURN_BYTES // 2
    for key in range(4, 40):
        streams.filled(key, now)
    assert streams.budget(1, now) == MIN_TURN


class PipeSession:
    """A pollable exec session over two pipes (output in, input out)."""

    def __init__(self) -> None:
        self.out_r, self.out_w = os.pipe()
        self.in_r, self.in_w = os.pipe()
        for fd in (self.out_r, self.out_w, self.in_w):
            os.set_blocking(fd, False)
        self.reads = 0

    def fileno(self) -> int:
        return self.out_r

    def read_nowait(self, max_bytes: int = 65536) -> bytes | None:
        try:
            data = os.read(self.out_r, max_bytes)
        except BlockingIOError:
            return None
        self.reads += 1
        return data

    def read(self, max_bytes: int = 65536, timeout: float | None = None) -> bytes:
        if not select.select([self.out_r], [], [], timeout)[0]:
            raise TimeoutError
        data = self.read_nowait(max_bytes)
        if data is None:
            raise TimeoutError
        return data

    def write_nowait(self, data: bytes) -> int:
        return os.write(self.in_w, data)

    def write(self, data: bytes) -> None:
        os.write(self.in_w, data)

    def print(self, data: bytes) -> None:
        """The process prints ``data``."""
        os.write(self.out_w, data)

    def fill(self) -> None:
        """The process prints until its pipe is full, like ``yes``."""
        try:
            while True:
                os.write(self.out_w, b"y\n" * 8192)
        except BlockingIOError:
            pass

    def resize(self, cols: int, rows: int) -> None:
        pass

    def close(self) -> None:
        for fd in (self.out_r, self.out_w, self.in_r, self.in_w):
            os.close(fd)


async def settle(seconds: float = 0.05) -> None:
    await asyncio.sleep(seconds)


class FloodAndTypist:
    """Two pumps on this loop: one over a process printing forever, one over a process someone types into."""

    def __init__(self, kind: type[pump.Pump]) -> None:
        self.flood, self.typist = PipeSession(), PipeSession()
        self.seen: list[tuple[str, int]] = []  # ("flood" | "echo", bytes), in the order handed over
        loop = asyncio.get_running_loop()
        self.flood_pump = kind(self.flood, loop, self._flooded, lambda: None, pump.DEFAULT_BUDGET)  # type: ignore[call-arg]
        self.typist_pump = kind(  # type: ignore[call-arg]
            self.typist, loop, lambda data: self.seen.append(("echo", len(data))), lambda: None, 4096
        )

    def _flooded(self, data: bytes) -> None:
        self.seen.append(("flood", len(data)))
        self.flood.fill()  # keeps printing

    @property
    def flooded(self) -> int:
        return sum(size for source, size in self.seen if source == "flood")

    async def __aenter__(self) -> FloodAndTypist:
        self.flood.fill()
        self.flood_pump.start()
        self.typist_pump.start()
        await settle()
        assert self.flooded > 0
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.flood_pump.stop()
        self.typist_pump.stop()
        await settle()
        self.flood.close()
        self.typist.close()


@pytest.mark.parametrize("kind", [FdPump, ThreadPump])
def test_a_keystroke_output_goes_before_floods_which_then_go_on(
    kind: type[pump.Pump], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pump, "STREAMS", Streams())
    monkeypatch.setattr(pump, "ECHO_WINDOW", 5.0)  # long enough that only the echo can end the wait
    run_in_fresh_loop(keystroke_first(kind), timeout=30)


async def keystroke_first(kind: type[pump.Pump]) -> None:
    async with FloodAndTypist(kind) as pair:
        pair.typist_pump.write(b"x")  # a keystroke: the flood waits for its echo
        pair.seen.clear()
        await settle(0.3)
        parked = pair.flooded
        pair.typist.print(b"x")  # the echo
        await settle()
        # The flood read at most what was already in flight before it parked;
        # after the echo it reads again.
        assert parked <= 4 * pump.DEFAULT_BUDGET
        assert ("echo", 1) in pair.seen
        after_echo = pair.seen[pair.seen.index(("echo", 1)) + 1 :]
        assert sum(size for source, size in after_echo if source == "flood") > 4 * pump.DEFAULT_BUDGET


def test_a_keystroke_without_output_holds_floods_back_only_for_the_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pump, "STREAMS", Streams())
    run_in_fresh_loop(silent_keystroke(), timeout=30)


async def silent_keystroke() -> None:
    async with FloodAndTypist(FdPump) as pair:
        pair.typist_pump.write(b"s3cret\r")  # a password at a prompt that does not echo
        before = pair.flooded
        await settle(ECHO_WINDOW + 0.05)
        assert pair.flooded > before + 4 * pump.DEFAULT_BUDGET


def test_a_paused_flood_stays_paused_when_its_parked_turn_comes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pump, "STREAMS", Streams())
    run_in_fresh_loop(paused_flood(), timeout=30)


async def paused_flood() -> None:
    async with FloodAndTypist(FdPump) as pair:
        pair.typist_pump.write(b"x")
        await settle(0)  # the flood parks behind the keystroke
        pair.flood_pump.pause()  # flow control: the parked turn ending must not restart reading
        pair.typist.print(b"x")
        await settle()
        paused_at = pair.flooded
        await settle(0.1)
        assert pair.flooded == paused_at
        pair.flood_pump.resume()
        await settle(0.1)
        assert pair.flooded > paused_at


def test_queued_turns_run_one_per_loop_iteration() -> None:
    class Turns:
        def __init__(self, log: list[str], name: str) -> None:
            self.log, self.name = log, name

        def queued_turn(self) -> None:
            self.log.append(self.name)

    async def run() -> list[list[str]]:
        streams, log, seen = Streams(), [], []
        loop = asyncio.get_running_loop()
        for name in "abc":
            streams.enqueue(Turns(log, name), loop)  # type: ignore[arg-type]
        for _ in range(4):
            await asyncio.sleep(0)
            seen.append(list(log))
        return seen

    # Between two of a flood's turns the loop gets round once: a keystroke or
    # an echo that arrived meanwhile is handled before the next flood's turn.
    assert run_in_fresh_loop(run()) == [["a"], ["a", "b"], ["a", "b", "c"], ["a", "b", "c"]]


def test_a_stopped_pump_leaves_nothing_behind_in_the_scheduler(monkeypatch: pytest.MonkeyPatch) -> None:
    streams = Streams()
    monkeypatch.setattr(pump, "STREAMS", streams)

    async def run() -> None:
        async with FloodAndTypist(FdPump) as pair:
            pair.typist_pump.write(b"x")
            await settle(0)
            pair.flood_pump.stop()
            pair.typist_pump.stop()
            await settle(ECHO_WINDOW * 2)

    run_in_fresh_loop(run(), timeout=30)
    assert not streams._parked
    assert not streams._queue
    assert not streams._awaited
    assert not streams._last_full
