"""When a development environment goes to sleep, and when it has lived long enough.

Pure decisions from a few facts of one environment and its project's settings,
so the reconciler can check thousands of rows per pass without a query each.

* **Sleep**: a ready development environment with no activity (HTTP through its
  URL, terminal input, agent commands, CLI/REST/MCP calls on it) for the
  project's ``sleep_after_minutes``. Deployment environments never sleep.
* **TTL**: a development environment that has seen no activity for the
  project's ``ttl_hours`` (counted from its creation or its last activity,
  whichever is later) is deleted. Pull-request environments follow their pull
  request instead (closed: deleted), so the TTL leaves them alone.
* A **pinned** environment neither sleeps nor expires.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from envhub.domain.phases import Phase
from envhub.domain.specs import EnvironmentKind, Trigger
from envhub.errors import ValidationFailed

DEFAULT_SLEEP_AFTER_MINUTES = 120
MAX_SLEEP_AFTER_MINUTES = 60 * 24 * 30
MAX_TTL_HOURS = 24 * 365
# The phases an environment can expire from: not while a job is working on it.
_EXPIRABLE = frozenset({Phase.ready, Phase.sleeping, Phase.failed})


class Verdict(StrEnum):
    sleep = "sleep"
    expire = "expire"


@dataclass(frozen=True, slots=True)
class Idleness:
    """One environment as the idleness check sees it (a few columns of its row and its project's)."""

    id: int
    phase: Phase
    kind: EnvironmentKind
    trigger: Trigger
    pinned: bool
    created_at: datetime
    last_active_at: datetime | None
    sleep_after_minutes: int | None
    ttl_hours: int | None

    @property
    def active_at(self) -> datetime:
        """The last sign of life: its last activity, or its creation when there was none since."""
        if self.last_active_at is None or self.last_active_at < self.created_at:
            return self.created_at
        return self.last_active_at


def sleeps_at(facts: Idleness) -> datetime | None:
    """When it goes to sleep if nothing happens meanwhile; None when it never does."""
    if facts.pinned or facts.kind is not EnvironmentKind.development or not facts.sleep_after_minutes:
        return None
    return facts.active_at + timedelta(minutes=facts.sleep_after_minutes)


def expires_at(facts: Idleness) -> datetime | None:
    """When the TTL deletes it if nothing happens meanwhile; None when it never does."""
    if facts.pinned or facts.kind is not EnvironmentKind.development or not facts.ttl_hours:
        return None
    if facts.trigger is Trigger.pull_request:
        return None  # its pull request decides
    return facts.active_at + timedelta(hours=facts.ttl_hours)


def verdict(facts: Idleness, now: datetime) -> Verdict | None:
    """What the reconciler does about it now: expire it, put it to sleep, or nothing."""
    expiry = expires_at(facts)
    if expiry is not None and expiry <= now and facts.phase in _EXPIRABLE:
        return Verdict.expire
    bedtime = sleeps_at(facts)
    if bedtime is not None and bedtime <= now and facts.phase is Phase.ready:
        return Verdict.sleep
    return None


def check_minutes(value: int | None, *, field: str, maximum: int) -> int | None:
    """A duration setting: None or 0 turns it off; otherwise between 1 and ``maximum``."""
    if value is None or value == 0:
        return None
    if value < 0 or value > maximum:
        raise ValidationFailed(
            f"{field} must be between 1 and {maximum} (0 or empty turns it off)", details={"field": field}
        )
    return value
