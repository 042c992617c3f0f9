"""Hours, CPU and memory hours and cost from spans over a window (domain/costs.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from envhub.domain.costs import (
    GIB,
    Prices,
    Span,
    Totals,
    UsageState,
    Window,
    WindowName,
    cost,
    overlap_hours,
    reservation,
    totals,
    usage_state,
    window,
)
from envhub.domain.phases import Phase
from envhub.errors import ValidationFailed

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
MONTH = window("month", NOW)


def at(day: int, hour: int = 0) -> datetime:
    return datetime(2026, 12, day, hour, tzinfo=UTC)


def running(start: datetime, end: datetime | None, cpu: int = 2000, memory: int = 4 * GIB) -> Span:
    return Span(UsageState.running, start, end, cpu_millicores=cpu, memory_bytes=memory)


def test_windows_are_this_calendar_month_and_the_last_30_days() -> None:
    assert Window(WindowName.month, at(1), NOW) == MONTH
    last = window("30d", NOW)
    assert (last.start, last.end) == (NOW - timedelta(days=30), NOW)
    with pytest.raises(ValidationFailed):
        window("year", NOW)


def test_phases_count_as_running_asleep_or_nothing() -> None:
    assert {p for p in Phase if usage_state(p) is UsageState.running} == {
        Phase.provisioning,
        Phase.ready,
        Phase.updating,
    }
    assert usage_state(Phase.sleeping) is UsageState.asleep
    for phase in (Phase.pending, Phase.failed, Phase.deleting, Phase.deleted, None):
        assert usage_state(phase) is None


def test_spans_are_cut_at_the_window_edges() -> None:
    before = running(datetime(2026, 11, 30, 22, tzinfo=UTC), at(1, 3))  # 2 h in November
    assert overlap_hours(before, MONTH) == 3.0
    outside = running(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC))
    assert overlap_hours(outside, MONTH) == 0.0
    ends_later = running(at(7, 10), at(7, 15))
    assert overlap_hours(ends_later, MONTH) == 2.0


def test_an_open_span_runs_to_the_end_of_the_window() -> None:
    assert overlap_hours(running(at(7, 9), None), MONTH) == 3.0


def test_running_spans_make_cpu_and_memory_hours_asleep_ones_only_hours() -> None:
    spans = [
        running(at(2, 0), at(2, 5), cpu=500, memory=GIB // 2),  # 5 h x 0.5 core x 0.5 GiB
        Span(UsageState.asleep, at(2, 5), at(3, 5)),  # 24 h asleep
        running(at(3, 5), None, cpu=2000, memory=4 * GIB),  # open: 103 h up to NOW
    ]
    figures = totals(spans, MONTH)
    assert figures == Totals(
        running_hours=108.0,
        asleep_hours=24.0,
        cpu_hours=5 * 0.5 + 103 * 2,
        memory_gib_hours=5 * 0.5 + 103 * 4,
    )


def test_no_spans_no_hours() -> None:
    assert totals([], MONTH) == Totals()


def test_cost_is_priced_cpu_and_memory_hours_and_none_without_prices() -> None:
    figures = Totals(running_hours=10, cpu_hours=20, memory_gib_hours=40)
    assert cost(figures, Prices(cpu_hour=0.04, memory_gib_hour=0.005, currency="EUR")) == 1.0
    assert cost(figures, Prices()) is None
    assert cost(Totals(), Prices(cpu_hour=1)) == 0.0


def test_the_reservation_is_the_quota_requests_clamped_like_the_cluster() -> None:
    assert reservation({}) == reservation({"quota": {}})
    assert reservation({}).cpu_millicores == 2000
    assert reservation({}).memory_bytes == 4 * GIB
    small = reservation({"quota": {"cpu": "500m", "memory": "256Mi"}})
    assert (small.cpu_millicores, small.memory_bytes) == (500, 256 * 1024 * 1024)
    # Above the platform's limit (8 cores, 16Gi) it is cut as the ResourceQuota is.
    huge = reservation({"quota": {"cpu": "64", "memory": "1Ti", "cpu_limit": "64", "memory_limit": "1Ti"}})
    assert (huge.cpu_millicores, huge.memory_bytes) == (8000, 16 * GIB)
    # A stored quota that no longer validates counts as the default.
    assert reservation({"quota": {"cpu": "lots"}}) == reservation({})
