"""The terminal registry (queue/terminals.py): on a real Redis, and in one process's memory, alike."""

from __future__ import annotations

import asyncio

import pytest
from redis import Redis

from envhub.queue.base import TerminalEnd, TerminalOwner, TerminalRegistry, TerminalSummary
from envhub.queue.terminals import LocalTerminalRegistry, RedisTerminalRegistry
from tests.support.loops import run_in_fresh_loop

A = TerminalOwner("http://10.0.0.1:3000", "run-a", 7)
B = TerminalOwner("http://10.0.0.2:3000", "run-b", 7)
A_AGAIN = TerminalOwner("http://10.0.0.1:3000", "run-a2", 7)  # the same pod, restarted


@pytest.fixture(params=["redis", "memory"])
def registry(request: pytest.FixtureRequest) -> TerminalRegistry:
    if request.param == "memory":
        return LocalTerminalRegistry()
    redis: Redis = request.getfixturevalue("redis")
    url = request.getfixturevalue("redis_url")
    assert redis.dbsize() == 0
    return RedisTerminalRegistry(url)


def test_one_claim_wins_and_the_others_learn_the_holder(registry: TerminalRegistry) -> None:
    async def scenario() -> None:
        results = await asyncio.gather(*(registry.claim("t1", owner, 30) for owner in (A, B, A_AGAIN)))
        winners = [owner for owner, holder in zip((A, B, A_AGAIN), results, strict=True) if holder is None]
        assert len(winners) == 1
        assert [holder for holder in results if holder is not None] == [winners[0], winners[0]]
        assert await registry.owner("t1") == winners[0]

    run_in_fresh_loop(scenario(), timeout=60)


def test_only_the_holder_refreshes_releases_or_ends_its_entry(registry: TerminalRegistry) -> None:
    async def scenario() -> None:
        assert await registry.claim("t1", A, 0.3) is None
        await registry.release("t1", B)
        await registry.refresh({"t1": B}, 30)
        assert await registry.owner("t1") == A
        await registry.refresh({"t1": A}, 30)
        await asyncio.sleep(0.5)
        assert await registry.owner("t1") == A  # refreshed past its first expiry
        await registry.end("t1", B, TerminalEnd(7, None, "not B's to end"), 30)
        assert await registry.owner("t1") == A
        await registry.end("t1", A, TerminalEnd(7, 3, "the shell exited"), 30)
        assert await registry.owner("t1") is None
        assert await registry.ended("t1") == TerminalEnd(7, 3, "the shell exited")
        # An entry that vanished is put back by its owner's refresh; an expired one frees the id.
        await registry.refresh({"t1": A}, 0.2)
        assert await registry.owner("t1") == A
        await asyncio.sleep(0.4)
        assert await registry.owner("t1") is None
        assert await registry.claim("t1", B, 30) is None

    run_in_fresh_loop(scenario(), timeout=60)


def _summary(terminal_id: str, who: str = "olivia", *participants: tuple[str, str]) -> TerminalSummary:
    return TerminalSummary(terminal_id, who, "", 1_700_000_000.5, 80, 24, tuple(participants))


def test_an_environments_list_follows_claims_publishes_releases_ends_and_expiry(
    registry: TerminalRegistry,
) -> None:
    other_env = TerminalOwner("http://10.0.0.2:3000", "run-b", 8)

    async def listed(environment_id: int = 7) -> dict[str, TerminalSummary]:
        return {s.id: s for s in await registry.listed(environment_id)}

    async def scenario() -> None:
        assert await listed() == {}
        assert await registry.claim("t1", A, 30) is None
        assert await registry.claim("t2", B, 30) is None
        assert await registry.claim("t3", other_env, 30) is None
        assert await listed() == {}  # claimed, nothing published yet
        t1 = _summary("t1", "olivia", ("olivia", "driver"), ("vera", "viewer"))
        t2 = _summary("t2", "max", ("max", "driver"))
        await registry.publish([(A, t1), (B, t2), (other_env, _summary("t3"))], 30)
        assert await listed() == {"t1": t1, "t2": t2}  # two replicas' sessions, one environment's
        assert set(await listed(8)) == {"t3"}

        # Only the holder's summary is written: an entry another owner took keeps its own.
        await registry.publish([(A_AGAIN, _summary("t1", "mallory"))], 30)
        assert (await listed())["t1"] == t1
        t1_later = _summary("t1", "olivia", ("olivia", "driver"))
        await registry.publish([(A, t1_later)], 30)
        assert (await listed())["t1"] == t1_later

        await registry.release("t2", A)  # not A's: stays
        assert set(await listed()) == {"t1", "t2"}
        await registry.release("t2", B)
        assert set(await listed()) == {"t1"}
        await registry.end("t1", A, TerminalEnd(7, 0, "the shell exited"), 30)
        assert await listed() == {}

        # A replica that stops refreshing (it crashed) drops out of the list when its entries expire.
        assert await registry.claim("t4", B, 0.3) is None
        await registry.publish([(B, _summary("t4"))], 0.3)
        assert set(await listed()) == {"t4"}
        await asyncio.sleep(0.5)
        assert await listed() == {}
        # ... and one that refreshes stays listed past the first expiry.
        assert await registry.claim("t5", B, 0.3) is None
        await registry.publish([(B, _summary("t5"))], 0.3)
        await registry.refresh({"t5": B}, 30)
        await registry.publish([(B, _summary("t5"))], 30)
        await asyncio.sleep(0.5)
        assert set(await listed()) == {"t5"}

    run_in_fresh_loop(scenario(), timeout=60)
