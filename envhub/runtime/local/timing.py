"""When each line of a local environment's output was printed.

The supervisor copies the app's output into ``output.log`` and notes in
``output.times`` (one ``<byte offset> <unix time>`` line per second of output)
where each second's output begins. A line's time is that of the last note at or
before its first byte: within a second of when it was printed. Lines written
before the first note (envhub's own start line) take the first note's time.
"""

from __future__ import annotations

import bisect
from datetime import UTC, datetime
from pathlib import Path

MAX_WINDOW = 16 << 20  # bytes read from the end of the log at most


def read_notes(path: Path) -> list[tuple[int, float]]:
    """The notes of ``path`` (a times file), by offset; [] when there is none."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    notes = []
    for line in text.splitlines():
        offset, _, moment = line.partition(" ")
        try:
            notes.append((int(offset), float(moment)))
        except ValueError:
            continue  # a note cut short by a crash
    return sorted(notes)


def rfc3339(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def time_of(notes: list[tuple[int, float]], offset: int) -> float:
    index = bisect.bisect_right(notes, (offset, float("inf"))) - 1
    return notes[max(index, 0)][1]


def stamped_tail(log: Path, notes: list[tuple[int, float]], count: int, *, end: int) -> list[str]:
    """The last ``count`` lines before byte ``end`` (0: those of the last 64 KiB), each starting
    with its time (RFC 3339) and a space."""
    window = min(max(64 * 1024, count * 256), MAX_WINDOW)
    start = max(0, end - window)
    with log.open("rb") as handle:
        handle.seek(start)
        data = handle.read(end - start)
    pieces = data.split(b"\n")
    if data.endswith(b"\n"):
        pieces.pop()
    offset, lines = start, []
    for index, piece in enumerate(pieces):
        whole = index > 0 or start == 0  # the window's first piece may be a line cut in two
        if whole:
            text = piece.decode("utf-8", "replace")
            lines.append(f"{rfc3339(time_of(notes, offset))} {text}")
        offset += len(piece) + 1
    return lines[-count:] if count else lines
