"""The reconciler's leader lease: one leader among workers running at once, and a takeover when it dies.

First the lease itself (envhub/jobs/lease.py) on the test's real Redis, then
two real ``python -m envhub.launcher worker`` processes against one Redis: exactly
one leads, and stays the leader while it lives; when its worker is killed, the
other takes over within one lease.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from redis import Redis

from envhub.config import Settings, override_settings
from envhub.jobs.lease import LeaderLease
from envhub.jobs.reconciler import LEADER_KEY, lease_seconds
from envhub.services import ports
from tests.conftest import build_settings
from tests.support import zygote
from tests.support.waiting import wait_for
from tests.support.workers import Workers

pytestmark = pytest.mark.slow

INTERVAL = 0.5
LEASE = lease_seconds(INTERVAL)


def test_one_holder_at_a_time_and_only_the_holder_renews_or_releases(redis: Redis) -> None:
    first = LeaderLease(redis, "test:lease", "first", LEASE)
    second = LeaderLease(redis, "test:lease", "second", LEASE)
    assert first.renew()
    assert not second.renew()
    assert (first.held(), second.held()) == (True, False)
    assert first.renew()  # renewing extends the holder's own lease
    assert 0 < redis.pttl("test:lease") <= LEASE * 1000

    second.release()  # not the holder: nothing happens
    assert redis.get("test:lease") == b"first"

    time.sleep(LEASE + 0.2)  # the holder stops renewing, as if it hung or died
    assert not first.held()  # it stops acting on its own, without asking Redis
    assert second.renew()
    assert not first.renew()  # and it cannot take the lease back while the other holds it
    assert redis.get("test:lease") == b"second"

    first.release()
    assert redis.get("test:lease") == b"second"
    second.release()
    assert redis.get("test:lease") is None
    assert first.renew()  # free again: taken at once


@pytest.fixture
def worker_settings(settings: Settings) -> Iterator[Settings]:
    values = {**settings.model_dump(), "reconcile_interval": INTERVAL, "job_stale_after": 2.0}
    with override_settings(build_settings(**values)) as configured:
        ports.reset()
        yield configured
    ports.reset()


@pytest.fixture
def workers(worker_settings: Settings, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(worker_settings, tmp_path)
    yield pool
    pool.stop_all()


def holder(redis: Redis) -> str | None:
    value = redis.get(LEADER_KEY)
    return value.decode() if value else None


def leading(workers: Workers) -> list[str]:
    """The holders that logged taking the lead, in order."""
    return re.findall(
        r"leader lease \S+: now leading \((\S+)\)", workers.log_path.read_text(errors="replace")
    )


def worker_of(name: str) -> int:
    """The worker process whose reconciler (a child process, see worker.py) holds the lease as ``name``."""
    pid = int(name.rsplit(":", 1)[1])
    return psutil.Process(pid).ppid()


def test_two_workers_at_once_one_leads_and_the_other_takes_over_when_it_dies(
    redis: Redis, workers: Workers
) -> None:
    started = [workers.start(), workers.start()]
    first = wait_for(lambda: holder(redis), timeout=60, what="a leader", describe=workers.log_tail)

    # Both reconcilers are running, and for many lease lengths the leader stays the same one.
    wait_for(
        lambda: len([p for p in psutil.process_iter(["cmdline"]) if _reconciler_of(p, started)]) == 2,
        timeout=30,
        what="both workers' reconciler processes",
        describe=workers.log_tail,
    )
    deadline = time.monotonic() + 4 * LEASE
    while time.monotonic() < deadline:
        assert holder(redis) == first, workers.log_tail()
        time.sleep(0.1)
    assert leading(workers) == [first], workers.log_tail()

    leader_worker = worker_of(first)
    [dying] = [proc for proc in started if proc.pid == leader_worker]
    [survivor] = [proc for proc in started if proc.pid != leader_worker]
    workers.kill(dying)

    second = wait_for(
        lambda: (found := holder(redis)) and found != first and found,
        timeout=LEASE + 10,
        what="the other worker to take the lead",
        describe=workers.log_tail,
    )
    assert worker_of(second) == survivor.pid
    # The new leader says so right after taking the lease: its line may still be on its way.
    wait_for(
        lambda: leading(workers) == [first, second],
        timeout=10,
        what="the new leader's log line",
        describe=workers.log_tail,
    )


def _reconciler_of(proc: psutil.Process, workers: list[zygote.Forked]) -> bool:
    """Whether ``proc`` is the reconciler process one of ``workers`` forked (see worker.py)."""
    pids = {worker.pid for worker in workers}
    try:
        # A fork of the worker: its command line is the worker's own (an environment's isn't).
        parent = proc.ppid()
        return parent in pids and proc.info["cmdline"] == psutil.Process(parent).cmdline()
    except psutil.Error:
        return False
