"""Fair turns: a flood yields to someone typing elsewhere, and flow control still wins."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from envhub.api.terminal import pump
from envhub.api.terminal.pump import (
    INTERACTIVE_WINDOW,
    TURN_BYTES,
    TYPING_RATE,
    TYPING_TURN,
    FdPump,
    Streams,
)
from tests.support.loops import run_in_fresh_loop


def test_streams_pace_a_flood_only_while_someone_types_elsewhere() -> None:
    streams, now = Streams(), 100.0
    streams.filled(1, now)  # session 1 floods
    assert streams.budget(1, now) == TURN_BYTES
    assert streams.hold(1, now, TURN_BYTES) == 0.0

    streams.typed(1, now)  # typing into the flood itself (Ctrl-C) does not slow it
    assert streams.hold(1, now, TURN_BYTES) == 0.0

    streams.typed(2, now)  # someone types in session 2
    assert streams.budget(1, now) == TYPING_TURN
    assert streams.hold(1, now, TYPING_TURN) == pytest.approx(TYPING_TURN / TYPING_RATE)
    assert streams.hold(2, now, 100) == 0.0  # the typist's session is never held

    streams.filled(3, now)  # two floods share the rate
    assert streams.hold(1, now, TYPING_TURN) == pytest.approx(2 * TYPING_TURN / TYPING_RATE)

    later = now + INTERACTIVE_WINDOW + 0.01
    streams.filled(1, later)
    assert streams.hold(1, later, TURN_BYTES) == 0.0  # the typing stopped: full pace again


class PipeSession:
    """A pollable exec session over two pipes (output in, input out)."""

    def __init__(self) -> None:
        self.out_r, self.out_w = os.pipe()
        self.in_r, self.in_w = os.pipe()
        for fd in (self.out_r, self.in_w):
            os.set_blocking(fd, False)

    def fileno(self) -> int:
        return self.out_r

    def read_nowait(self, max_bytes: int = 65536) -> bytes | None:
        try:
            return os.read(self.out_r, max_bytes)
        except BlockingIOError:
            return None

    def write_nowait(self, data: bytes) -> int:
        return os.write(self.in_w, data)

    def resize(self, cols: int, rows: int) -> None:
        pass

    def close(self) -> None:
        for fd in (self.out_r, self.out_w, self.in_r, self.in_w):
            os.close(fd)


def test_a_paced_flood_reads_slowly_while_someone_types_and_stays_paused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pump, "STREAMS", Streams())
    run_in_fresh_loop(paced_flood())


async def paced_flood() -> None:
    loop = asyncio.get_running_loop()
    flood, typist = PipeSession(), PipeSession()
    received = [0]
    os.set_blocking(flood.out_w, False)

    def refill() -> None:  # keep the flood's pipe full, like a process printing forever
        try:
            while True:
                os.write(flood.out_w, b"y\n" * 8192)
        except BlockingIOError:
            pass

    def output(data: bytes) -> None:
        received[0] += len(data)
        refill()

    flood_pump = FdPump(flood, loop, output, lambda: None, pump.DEFAULT_BUDGET)  # type: ignore[arg-type]
    typist_pump = FdPump(typist, loop, lambda data: None, lambda: None, pump.DEFAULT_BUDGET)  # type: ignore[arg-type]
    try:
        refill()
        flood_pump.start()
        typist_pump.start()
        await asyncio.sleep(0.1)
        assert received[0] > 0

        started, before = time.monotonic(), received[0]
        while time.monotonic() - started < 0.5:
            typist_pump.write(b"x")  # someone types, about as fast as a person can
            await asyncio.sleep(0.02)
        paced = (received[0] - before) / (time.monotonic() - started)
        assert paced < 2 * TYPING_RATE + TYPING_TURN / 0.5

        flood_pump.pause()  # flow control: a hold ending must not restart reading
        await asyncio.sleep(0.05)
        paused_at = received[0]
        await asyncio.sleep(0.1)
        assert received[0] == paused_at
        flood_pump.resume()
        await asyncio.sleep(0.1)
        assert received[0] > paused_at
    finally:
        flood_pump.stop()
        typist_pump.stop()
        flood.close()
        typist.close()


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
