"""How an environment stands with idle sleep and its TTL, as every face shows it."""

from __future__ import annotations

from datetime import datetime
from typing import TypedDict

from envhub.domain import humanize as fmt
from envhub.domain.idleness import Idleness, expires_at, sleeps_at
from envhub.domain.phases import Phase
from envhub.domain.policy import Action
from envhub.domain.specs import EnvironmentKind
from envhub.models import Environment, Project


class IdleView(TypedDict):
    pinned: bool
    last_active_at: str  # ISO 8601, "" when nothing happened since it was created
    last_active: str  # "5 min ago"
    sleeps_at: str  # ISO 8601 when it goes to sleep if left alone; "" never (or asleep already)
    sleeps: str  # "in 1 h 55 min", "" never
    expires_at: str  # ISO 8601 when its TTL deletes it if left alone; "" never
    expires: str
    can_sleep: bool
    can_wake: bool
    can_pin: bool


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value is not None else ""


def _in(value: datetime | None, now: datetime) -> str:
    if value is None:
        return ""
    seconds = (value - now).total_seconds()
    return "now" if seconds <= 0 else f"in {fmt.duration(seconds)}"


def idle_view(environment: Environment, project: Project, allowed: frozenset[Action]) -> IdleView:
    assert environment.id is not None
    facts = Idleness(
        id=environment.id,
        phase=environment.phase,
        kind=environment.kind,
        trigger=environment.trigger,
        pinned=environment.pinned,
        created_at=environment.created_at,
        last_active_at=environment.last_active_at,
        sleep_after_minutes=project.sleep_after_minutes,
        ttl_hours=project.ttl_hours,
    )
    now = fmt.now()
    bedtime = sleeps_at(facts) if environment.phase is Phase.ready else None
    expiry = expires_at(facts) if environment.phase is not Phase.deleted else None
    may = Action.environment_redeploy in allowed and environment.desired_state == "present"
    development = environment.kind is EnvironmentKind.development
    return IdleView(
        pinned=environment.pinned,
        last_active_at=_iso(environment.last_active_at),
        last_active=fmt.ago(environment.last_active_at) if environment.last_active_at else "",
        sleeps_at=_iso(bedtime),
        sleeps=_in(bedtime, now),
        expires_at=_iso(expiry),
        expires=_in(expiry, now),
        can_sleep=may and development and environment.phase is Phase.ready,
        can_wake=may and environment.phase is Phase.sleeping,
        can_pin=may and environment.phase is not Phase.deleted,
    )
