"""When each line of a local environment's output was printed.

The app writes its output into ``output.log``; once a second the supervisor
looks at the log's size and, when it grew, notes in ``output.times`` a line
``<start> <unix time> <end>``: the bytes from ``start`` to ``end`` were
written by then. A line's time is that of the note whose bytes hold its
start: at most a second after it was printed. Lines no note holds yet (printed
since the supervisor's last look) take the log's modification time, which is
that of its newest byte. Lines written
before the first note (envhub's own start line) take the first note's time.
"""

from __future__ import annotations

import bisect
from datetime import UTC, datetime
from pathlib import Path

MAX_WINDOW = 16 << 20  # bytes read from the end of the log at most


def read_notes(path: Path) -> list[tuple[int, float]]:
    """The notes of ``path`` (a times file) as (start, time), by start; [] when there is none.

    A note's bytes end where the next one's start; the last one's end is :func:`noted_end`'s.
    """
    return [(start, moment) for start, moment, _end in _notes(path)]


def noted_end(path: Path) -> int:
    """Where the bytes of the times file's last note end (0 without notes)."""
    notes = _notes(path)
    return notes[-1][2] if notes else 0


def _notes(path: Path) -> list[tuple[int, float, int]]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    notes = []
    for line in text.splitlines():
        fields = line.split()
        try:
            start, moment = int(fields[0]), float(fields[1])
            end = int(fields[2]) if len(fields) > 2 else start
        except (IndexError, ValueError):
            continue  # a note cut short by a crash
        notes.append((start, moment, end))
    return sorted(notes)


def rfc3339(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def time_of(notes: list[tuple[int, float]], offset: int, *, noted: int = -1, newest: float = 0.0) -> float:
    """The time of the byte at ``offset``: its note's, or ``newest`` past ``noted`` (where the notes end)."""
    if noted >= 0 and offset >= noted and newest:
        return newest
    index = bisect.bisect_right(notes, (offset, float("inf"))) - 1
    return notes[max(index, 0)][1]


def stamped_tail(
    log: Path, notes: list[tuple[int, float]], count: int, *, end: int, noted: int = -1
) -> list[str]:
    """The last ``count`` lines before byte ``end`` (0: those of the last 64 KiB), each starting
    with its time (RFC 3339) and a space. Lines past ``noted`` (where the notes end) take the
    log's modification time."""
    newest = log.stat().st_mtime
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
            lines.append(f"{rfc3339(time_of(notes, offset, noted=noted, newest=newest))} {text}")
        offset += len(piece) + 1
    return lines[-count:] if count else lines
