"""When a development environment sleeps and when its TTL deletes it (domain/idleness.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from envhub.domain.idleness import Idleness, Verdict, check_minutes, expires_at, sleeps_at, verdict
from envhub.domain.phases import Phase, can_transition
from envhub.domain.specs import EnvironmentKind, Trigger
from envhub.errors import ValidationFailed

CREATED = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
ENV = Idleness(
    id=1,
    phase=Phase.ready,
    kind=EnvironmentKind.development,
    trigger=Trigger.manual,
    pinned=False,
    created_at=CREATED,
    last_active_at=None,
    sleep_after_minutes=120,
    ttl_hours=48,
)


def at(**delta: float) -> datetime:
    return CREATED + timedelta(**delta)


def test_it_sleeps_after_the_idle_time_counted_from_its_creation_or_last_activity() -> None:
    assert verdict(ENV, at(minutes=119)) is None
    assert verdict(ENV, at(minutes=120)) is Verdict.sleep
    used = replace(ENV, last_active_at=at(minutes=100))
    assert sleeps_at(used) == at(minutes=220)
    assert verdict(used, at(minutes=200)) is None
    assert verdict(used, at(minutes=221)) is Verdict.sleep


def test_only_a_ready_environment_is_put_to_sleep() -> None:
    for phase in (Phase.provisioning, Phase.updating, Phase.sleeping, Phase.failed, Phase.pending):
        assert verdict(replace(ENV, phase=phase), at(hours=3)) is None, phase


def test_the_ttl_deletes_a_resting_environment_after_its_hours_without_activity() -> None:
    assert expires_at(ENV) == at(hours=48)
    assert verdict(ENV, at(hours=47)) is Verdict.sleep  # idle long enough to sleep, not yet to go
    for phase in (Phase.ready, Phase.sleeping, Phase.failed):
        assert verdict(replace(ENV, phase=phase), at(hours=48)) is Verdict.expire, phase
    for phase in (Phase.provisioning, Phase.updating, Phase.deleting):
        assert verdict(replace(ENV, phase=phase), at(hours=49)) is None, phase  # a job is at work


def test_pinned_deployment_and_pull_request_environments_are_left_alone() -> None:
    much_later = at(days=30)
    assert verdict(replace(ENV, pinned=True), much_later) is None
    assert verdict(replace(ENV, kind=EnvironmentKind.deployment), much_later) is None
    pull_request = replace(ENV, trigger=Trigger.pull_request)
    assert expires_at(pull_request) is None  # its pull request decides
    assert verdict(pull_request, much_later) is Verdict.sleep  # but it sleeps like any other


def test_settings_turned_off_never_decide() -> None:
    off = replace(ENV, sleep_after_minutes=None, ttl_hours=None)
    assert (sleeps_at(off), expires_at(off), verdict(off, at(days=365))) == (None, None, None)


def test_an_activity_recorded_before_creation_counts_from_creation() -> None:
    assert replace(ENV, last_active_at=CREATED - timedelta(days=1)).active_at == CREATED


@pytest.mark.parametrize(("value", "expected"), [(None, None), (0, None), (1, 1), (600, 600)])
def test_a_duration_setting_of_zero_turns_it_off(value: int | None, expected: int | None) -> None:
    assert check_minutes(value, field="x", maximum=600) == expected


@pytest.mark.parametrize("value", [-1, 601])
def test_a_duration_setting_out_of_range_is_refused(value: int) -> None:
    with pytest.raises(ValidationFailed) as caught:
        check_minutes(value, field="ttl_hours", maximum=600)
    assert caught.value.details == {"field": "ttl_hours"}


def test_sleep_and_wake_are_edges_of_the_lifecycle() -> None:
    assert can_transition(Phase.ready, Phase.sleeping)
    assert can_transition(Phase.sleeping, Phase.provisioning)  # a wake
    assert can_transition(Phase.sleeping, Phase.deleting)  # the TTL, or a person
    assert not can_transition(Phase.updating, Phase.sleeping)
