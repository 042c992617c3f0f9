"""Reading what an environment's processes print (authorized like any read).

Searches and time ranges are applied here, on the server, to at most
:data:`MAX_SCAN` lines read from the runtime, so every face filters the same
way and a browser never receives what it did not ask for. A time range needs
the runtime's own time of each line (the kubelet's on Kubernetes, the
supervisor's notes, to the second, on the local runtime; a log without them
answers ``not_supported``).
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypedDict

from sqlmodel import Session

from envhub.domain import logs as rules
from envhub.domain.principals import Principal
from envhub.runtime.base import Runtime
from envhub.services.environments import get_environment

MAX_TAIL = 5000
# Lines read from the runtime to search or cut to a time range; a download reads as many.
MAX_SCAN = 50_000


@dataclass(frozen=True, slots=True)
class LogFilter:
    """Which lines: of which instance, matching what, printed when; shown with their times or not."""

    previous: bool = False  # the container's instance before its last restart (a crash's output)
    search: str = ""
    regex: bool = False
    ignore_case: bool = False
    since: str = ""  # a time bound as domain/logs.py reads it ("15m", "2026-12-07T17:00:00Z")
    until: str = ""
    timestamps: bool = False

    @property
    def narrows(self) -> bool:
        return bool(self.search or self.since or self.until)


EVERY_LINE = LogFilter()


class LogPage(TypedDict):
    environment: str  # its name, for a download's file name
    container: str  # as asked; "" for the environment's default
    previous: bool
    lines: list[str]
    matched: int  # lines that passed the filter (more than shown when capped)
    scanned: int  # lines read from the runtime
    capped: bool  # older lines exist than were searched, or more matched than shown
    since: str  # the bounds as read, RFC 3339 UTC ("" when not given)
    until: str


@dataclass(frozen=True, slots=True)
class _Bounds:
    since: datetime | None
    until: datetime | None


def _bounds(chosen: LogFilter, now: datetime) -> _Bounds:
    since = rules.parse_time_bound(chosen.since, now=now, field="since") if chosen.since else None
    until = rules.parse_time_bound(chosen.until, now=now, field="until") if chosen.until else None
    return _Bounds(since, until)


def _passes(
    chosen: LogFilter, bounds: _Bounds, test: Callable[[str], bool] | None
) -> Callable[[str], str | None]:
    """What a raw runtime line becomes: the line to show, or ``None`` when it is filtered out."""
    stamped = chosen.timestamps or bounds.since is not None or bounds.until is not None

    def keep(line: str) -> str | None:
        text = line
        if stamped:
            moment, text = rules.split_stamp(line)
            if moment is not None and (
                (bounds.since is not None and moment < bounds.since)
                or (bounds.until is not None and moment > bounds.until)
            ):
                return None
        if test is not None and not test(text):
            return None
        return line if chosen.timestamps else text

    return keep


def _stamp(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment is not None else ""


def _since_seconds(bounds: _Bounds, now: datetime) -> int | None:
    if bounds.since is None:
        return None
    return max(1, math.ceil((now - bounds.since).total_seconds()) + 1)


def environment_logs(
    *,
    session: Session,
    actor: Principal,
    runtime: Runtime,
    environment_id: int,
    tail: int = 200,
    container: str | None = None,
    chosen: LogFilter = EVERY_LINE,
    scan: int = MAX_SCAN,
) -> LogPage:
    """The last ``tail`` lines that pass ``chosen`` (of one service's container when given).

    Without a search or a time range the runtime is asked for ``tail`` lines
    only; with one, for the last ``scan`` lines (at most :data:`MAX_SCAN`),
    and ``capped`` says whether older lines were left unread.
    """
    environment = get_environment(session=session, actor=actor, environment_id=environment_id)
    tail = max(1, min(tail, MAX_SCAN))
    now = datetime.now(UTC)
    bounds = _bounds(chosen, now)
    test = (
        rules.matcher(chosen.search, is_regex=chosen.regex, ignore_case=chosen.ignore_case)
        if chosen.search
        else None
    )
    keep = _passes(chosen, bounds, test)
    read = max(tail, min(scan, MAX_SCAN)) if chosen.narrows else tail
    raw = runtime.logs(
        environment_id,
        tail=read,
        container=container,
        previous=chosen.previous,
        timestamps=chosen.timestamps or bounds.since is not None or bounds.until is not None,
        since_seconds=_since_seconds(bounds, now),
    )
    shown: deque[str] = deque(maxlen=tail)
    scanned = matched = 0
    for line in itertools.islice(raw, read):
        scanned += 1
        kept = keep(line)
        if kept is not None:
            matched += 1
            shown.append(kept)
    return LogPage(
        environment=environment.name,
        container=container or "",
        previous=chosen.previous,
        lines=list(shown),
        matched=matched,
        scanned=scanned,
        capped=matched > len(shown) or (chosen.narrows and scanned >= read),
        since=_stamp(bounds.since),
        until=_stamp(bounds.until),
    )


def follow_environment_logs(
    *,
    session: Session,
    actor: Principal,
    runtime: Runtime,
    environment_id: int,
    tail: int = 50,
    container: str | None = None,
    since_seconds: int | None = None,
    until: float | None = None,
    chosen: LogFilter = EVERY_LINE,
) -> Iterator[str]:
    """The last ``tail`` lines, then new lines as they are printed (blocking iterator).

    ``until`` (a ``time.monotonic()`` moment) ends it then, even while nothing is
    printed. A search filters the lines as they come; a previous instance has
    nothing more to print, so following it ends after its last line.
    """
    get_environment(session=session, actor=actor, environment_id=environment_id)
    now = datetime.now(UTC)
    bounds = _bounds(chosen, now)
    # Each line gets the whole budget: a follow lasts minutes, a pathological expression still fails.
    test = (
        rules.matcher(chosen.search, is_regex=chosen.regex, ignore_case=chosen.ignore_case, per_line=True)
        if chosen.search
        else None
    )
    keep = _passes(chosen, bounds, test)
    lines = runtime.logs(
        environment_id,
        follow=True,
        tail=max(0, min(tail, MAX_TAIL)),
        container=container,
        since_seconds=since_seconds if since_seconds is not None else _since_seconds(bounds, now),
        until=until,
        previous=chosen.previous,
        timestamps=chosen.timestamps or bounds.since is not None or bounds.until is not None,
    )
    return (kept for line in lines if (kept := keep(line)) is not None)
