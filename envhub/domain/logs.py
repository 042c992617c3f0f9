"""The rules for reading logs that every face shares: time bounds, line times, searches.

A time bound is an RFC 3339 moment (``2026-12-07T17:00:00Z``; a date alone is
its midnight UTC) or a span back from now (``90s``, ``15m``, ``2h``, ``1d``),
as ``kubectl logs --since`` and ``--since-time`` take them. A search is a
substring or a regular expression; expressions run with a time budget
(:data:`SEARCH_BUDGET`), so a pathological one fails cleanly instead of
holding a server thread.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import regex

from envhub.errors import ValidationFailed

MAX_SEARCH = 500  # characters of a search
SEARCH_BUDGET = 2.0  # seconds all of one search's matching may take
_SPAN = re.compile(r"^(\d{1,7})([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time_bound(text: str, *, now: datetime, field: str) -> datetime:
    """``text`` as a UTC moment; ``field`` names the input in the error."""
    value = text.strip()
    span = _SPAN.match(value)
    if span:
        return now - timedelta(seconds=int(span.group(1)) * _UNITS[span.group(2)])
    try:
        moment = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise ValidationFailed(
            f"{field}: {text!r} is neither a time (2026-12-07T17:00:00Z) nor a span back from now (15m, 2h)",
            details={field: "expected an RFC 3339 time or a span such as 15m"},
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def split_stamp(line: str) -> tuple[datetime | None, str]:
    """A runtime's timestamped line (``<RFC 3339> <text>``) as (its time, its text).

    A line without a readable time is ``(None, line)``.
    """
    stamp, space, rest = line.partition(" ")
    if not space or not stamp[:4].isdigit():
        return None, line
    # The kubelet writes nanoseconds; a datetime holds microseconds.
    head, dot, fraction = stamp.rstrip("Z").partition(".")
    try:
        moment = datetime.fromisoformat(head + (dot + fraction[:6] if dot else "")).replace(tzinfo=UTC)
    except ValueError:
        return None, line
    return moment, rest


def matcher(
    search: str, *, is_regex: bool, ignore_case: bool, per_line: bool = False
) -> Callable[[str], bool]:
    """A test of one line for ``search``; raises ``ValidationFailed`` for a bad expression.

    The returned test raises ``ValidationFailed`` once the search's matching
    has taken :data:`SEARCH_BUDGET` seconds in all (``per_line``: on one line).
    """
    if len(search) > MAX_SEARCH:
        raise ValidationFailed(
            f"search: at most {MAX_SEARCH} characters", details={"search": f"longer than {MAX_SEARCH}"}
        )
    if not is_regex:
        if ignore_case:
            folded = search.casefold()
            return lambda line: folded in line.casefold()
        return lambda line: search in line
    try:
        pattern = regex.compile(search, regex.IGNORECASE if ignore_case else 0)
    except regex.error as exc:
        raise ValidationFailed(
            f"search: not a regular expression ({exc})", details={"search": str(exc)}
        ) from None
    deadline = time.monotonic() + SEARCH_BUDGET

    def test(line: str) -> bool:
        left = SEARCH_BUDGET if per_line else deadline - time.monotonic()
        try:
            if left <= 0:
                raise TimeoutError
            return pattern.search(line, timeout=left) is not None
        except TimeoutError:
            raise ValidationFailed(
                f"search: the expression took more than {SEARCH_BUDGET:g}s over these lines; "
                "make it simpler or read fewer lines",
                details={"search": "too slow"},
            ) from None

    return test
