"""Hours running and asleep, CPU and memory hours, and what they cost at the operator's prices.

An environment's life is recorded as spans (``models/environment_span.py``):
``running`` while it is provisioning, ready or updating, ``asleep`` while it
sleeps, nothing while it waits, has failed or is being deleted. A running span
carries what the environment reserves: the CPU and memory requests total of
its quota (:class:`~envhub.domain.workloads.QuotaSpec` ``cpu`` and ``memory``),
clamped to the platform's limits exactly as the Kubernetes runtime clamps its
ResourceQuota. The local runtime sets no requests; it is charged the same
quota, so both runtimes read alike. CPU hours are reserved cores times hours
running; memory hours are reserved GiB times hours running; an asleep
environment reserves nothing (its kept workspace is not priced).

Everything here is arithmetic on spans and a window; no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from envhub.domain.kube.limits import PlatformLimits, clamp_quota
from envhub.domain.kube.quantities import parse_quantity
from envhub.domain.phases import Phase
from envhub.domain.workloads import QuotaSpec
from envhub.errors import ValidationFailed

GIB = 1024**3
_HOUR = 3600.0


class UsageState(StrEnum):
    running = "running"
    asleep = "asleep"


_STATES: dict[Phase, UsageState] = {
    Phase.provisioning: UsageState.running,
    Phase.ready: UsageState.running,
    Phase.updating: UsageState.running,
    Phase.sleeping: UsageState.asleep,
}


def usage_state(phase: Phase | None) -> UsageState | None:
    """What a phase counts as; None: not counted (pending, failed, deleting, deleted)."""
    return _STATES.get(phase) if phase is not None else None


@dataclass(frozen=True, slots=True)
class Reservation:
    cpu_millicores: int
    memory_bytes: int


def reservation(spec: Mapping[str, Any], limits: PlatformLimits | None = None) -> Reservation:
    """The requests total an environment's stored spec reserves, clamped to the platform's limits.

    A spec whose quota does not validate (written by an older envhub) counts as the default quota.
    """
    try:
        quota = QuotaSpec.model_validate(spec.get("quota") or {})
    except ValueError:
        quota = QuotaSpec()
    clamped, _cut = clamp_quota(quota, limits or PlatformLimits())
    return Reservation(
        cpu_millicores=round(parse_quantity(clamped.cpu) * 1000),
        memory_bytes=round(parse_quantity(clamped.memory)),
    )


@dataclass(frozen=True, slots=True)
class Span:
    state: UsageState
    started_at: datetime
    ended_at: datetime | None  # None: still open
    cpu_millicores: int = 0
    memory_bytes: int = 0


class WindowName(StrEnum):
    month = "month"  # this calendar month (UTC) up to now
    last_30_days = "30d"


@dataclass(frozen=True, slots=True)
class Window:
    name: WindowName
    start: datetime
    end: datetime


def window(name: WindowName | str, now: datetime) -> Window:
    try:
        chosen = WindowName(name)
    except ValueError:
        choices = ", ".join(w.value for w in WindowName)
        raise ValidationFailed(
            f"unknown window {name!r}: one of {choices}", details={"field": "window"}
        ) from None
    if chosen is WindowName.month:
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    else:
        start = now - timedelta(days=30)
    return Window(name=chosen, start=start, end=now)


def overlap_hours(span: Span, within: Window) -> float:
    """Hours of ``span`` inside ``within``; an open span runs to the window's end."""
    end = within.end if span.ended_at is None else min(span.ended_at, within.end)
    start = max(span.started_at, within.start)
    return max(0.0, (end - start).total_seconds() / _HOUR)


@dataclass(frozen=True, slots=True)
class Totals:
    running_hours: float = 0.0
    asleep_hours: float = 0.0
    cpu_hours: float = 0.0  # reserved cores x hours running
    memory_gib_hours: float = 0.0  # reserved GiB x hours running

    def __add__(self, other: Totals) -> Totals:
        return Totals(
            running_hours=self.running_hours + other.running_hours,
            asleep_hours=self.asleep_hours + other.asleep_hours,
            cpu_hours=self.cpu_hours + other.cpu_hours,
            memory_gib_hours=self.memory_gib_hours + other.memory_gib_hours,
        )


def totals(spans: Iterable[Span], within: Window) -> Totals:
    result = Totals()
    for span in spans:
        hours = overlap_hours(span, within)
        if hours == 0.0:
            continue
        if span.state is UsageState.asleep:
            result += Totals(asleep_hours=hours)
        else:
            result += Totals(
                running_hours=hours,
                cpu_hours=hours * span.cpu_millicores / 1000,
                memory_gib_hours=hours * span.memory_bytes / GIB,
            )
    return result


@dataclass(frozen=True, slots=True)
class Prices:
    """The operator's prices; both zero means none were set (then figures are hours, not money)."""

    cpu_hour: float = 0.0
    memory_gib_hour: float = 0.0
    currency: str = "USD"

    @property
    def set(self) -> bool:
        return self.cpu_hour > 0 or self.memory_gib_hour > 0


def cost(figures: Totals, prices: Prices) -> float | None:
    """The estimated cost, rounded to cents; None when no prices are set (never a cost of 0)."""
    if not prices.set:
        return None
    return round(figures.cpu_hours * prices.cpu_hour + figures.memory_gib_hours * prices.memory_gib_hour, 2)
