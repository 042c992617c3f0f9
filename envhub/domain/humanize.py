"""Turning timestamps into the short relative text people read at a glance.

Computed on the server when a view model is built (``services/*_views.py``);
pages rebuild their view models on every live tick, so "12 s ago" keeps moving
while a page is open.
"""

from __future__ import annotations

import signal
from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)


def parse_time(value: str | datetime | None) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def ago(value: str | datetime | None, *, at: datetime | None = None) -> str:
    """Relative time: just now, 42 s ago, 3 min ago, 5 h ago, 2 d ago."""
    moment = parse_time(value)
    if moment is None:
        return ""
    seconds = max(0.0, ((at or now()) - moment).total_seconds())
    if seconds < 5:
        return "just now"
    if seconds < 60:
        return f"{int(seconds)} s ago"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // 86400)} d ago"


def duration(seconds: float) -> str:
    """A short duration: 0.4 s, 12 s, 2 min 5 s, 1 h 3 min."""
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{int(seconds)} s"
    if seconds < 3600:
        minutes, rest = divmod(int(seconds), 60)
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours} h {rest // 60} min"


def span(start: str | datetime | None, end: str | datetime | None, *, at: datetime | None = None) -> str:
    """How long something took, or has taken so far when it has not ended."""
    begun = parse_time(start)
    if begun is None:
        return ""
    finished = parse_time(end) or at or now()
    return duration((finished - begun).total_seconds())


def stamp(value: str | datetime | None) -> str:
    """An absolute UTC time for tooltips: "2026-11-28 19:55:02 UTC"."""
    moment = parse_time(value)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else ""


def size(count: int) -> str:
    """A byte count for people: 812 B, 4.2 kB, 13.0 MB, 2.1 GB (powers of 1000, as disks are sold)."""
    value = float(max(0, count))
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


MAX_ID = 2**31 - 1


def signal_name(number: int) -> str:
    """``SIGKILL`` for 9: how a process's end by a signal is said."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def parse_id(raw: object) -> int:
    """An id from a URL or an event argument; 0 (which matches nothing) unless a plausible one."""
    text = str(raw)
    if not text.isascii() or not text.isdigit() or len(text) > 10:
        return 0
    value = int(text)
    return value if 0 < value <= MAX_ID else 0
