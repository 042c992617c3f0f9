"""runtime/local/timing.py: a line's time is that of the supervisor's last note at or before it."""

from __future__ import annotations

import os
from pathlib import Path

from envhub.runtime.local import timing

T0 = 1_796_601_600.0  # 2026-12-07T00:00:00Z


def test_each_line_takes_the_time_of_the_note_before_it(tmp_path: Path) -> None:
    log = tmp_path / "output.log"
    log.write_bytes(b"--- envhub: starting\nfirst\nsecond\nthird\n")
    times = tmp_path / "output.times"
    first = len(b"--- envhub: starting\n")
    third = first + len(b"first\nsecond\n")
    times.write_text(f"{first} {T0 + 1:.3f}\n{third} {T0 + 5.5:.3f}\n12 not-a-time\n")
    notes = timing.read_notes(times)
    assert notes == [(first, T0 + 1), (third, T0 + 5.5)]
    lines = timing.stamped_tail(log, notes, 0, end=log.stat().st_size)
    assert lines == [
        "2026-12-07T00:00:01.000000Z --- envhub: starting",  # before the first note: its time
        "2026-12-07T00:00:01.000000Z first",
        "2026-12-07T00:00:01.000000Z second",
        "2026-12-07T00:00:05.500000Z third",
    ]
    assert timing.stamped_tail(log, notes, 2, end=log.stat().st_size) == lines[-2:]
    assert timing.read_notes(tmp_path / "missing.times") == []


def test_a_line_cut_by_the_window_is_left_out(tmp_path: Path) -> None:
    log = tmp_path / "output.log"
    lines = [f"line {i:06d}" for i in range(20_000)]  # 240 kB: more than the 64 KiB window
    log.write_text("".join(line + "\n" for line in lines))
    notes = [(0, T0)]
    tail = timing.stamped_tail(log, notes, 0, end=log.stat().st_size)
    texts = [line.split(" ", 1)[1] for line in tail]
    assert texts == lines[-len(texts) :]  # whole lines only, the newest last


def test_lines_no_note_holds_yet_take_the_logs_modification_time(tmp_path: Path) -> None:
    """Printed since the supervisor's last look: the newest byte's time, not an older note's."""
    log = tmp_path / "output.log"
    log.write_bytes(b"early\nlate\n")
    times = tmp_path / "output.times"
    times.write_text(f"0 {T0 + 1:.3f} 6\n")  # "early\n" was there by T0 + 1; "late" not yet noted
    os.utime(log, (T0 + 3.5, T0 + 3.5))
    noted = timing.noted_end(times)
    assert noted == 6
    lines = timing.stamped_tail(log, timing.read_notes(times), 0, end=log.stat().st_size, noted=noted)
    assert lines == ["2026-12-07T00:00:01.000000Z early", "2026-12-07T00:00:03.500000Z late"]
