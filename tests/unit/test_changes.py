"""The change-notification port: Redis pub/sub across processes, memory within one (queue/changes.py)."""

from __future__ import annotations

import threading

from redis import Redis

from envhub.queue.changes import LocalChanges, RedisChanges
from envhub.queue.events import environment_channel, project_channel
from tests.support.loops import run_in_fresh_loop


def test_in_process_feeds_hear_only_their_channels_from_any_thread() -> None:
    bus = LocalChanges()

    async def scenario() -> tuple[bool, bool, bool]:
        feed = bus.feed()
        await feed.subscribe([environment_channel(1)])
        threading.Thread(target=bus.publish, args=(project_channel(9),)).start()
        unrelated = await feed.wait(0.3)
        threading.Thread(target=bus.publish, args=(project_channel(9), environment_channel(1))).start()
        heard = await feed.wait(2.0)
        await feed.close()
        bus.publish(environment_channel(1))
        after_close = await feed.wait(0.2)
        return unrelated, heard, after_close

    assert run_in_fresh_loop(scenario(), timeout=30) == (False, True, False)


def test_a_burst_counts_once() -> None:
    bus = LocalChanges()

    async def scenario() -> tuple[bool, bool]:
        feed = bus.feed()
        await feed.subscribe([environment_channel(1)])
        for _ in range(5):
            bus.publish(environment_channel(1))
        first = await feed.wait(1.0)
        second = await feed.wait(0.3)
        await feed.close()
        return first, second

    assert run_in_fresh_loop(scenario(), timeout=30) == (True, False)


def test_redis_feeds_hear_other_processes(redis: Redis, redis_url: str) -> None:
    changes = RedisChanges(redis_url)

    async def scenario() -> tuple[bool, bool]:
        feed = changes.feed()
        await feed.subscribe([environment_channel(7)])
        quiet = await feed.wait(0.2)
        redis.publish(environment_channel(7), b"1")  # as a worker would
        heard = await feed.wait(3.0)
        await feed.close()
        return quiet, heard

    assert run_in_fresh_loop(scenario(), timeout=30) == (False, True)


def test_publishing_to_an_unreachable_redis_is_dropped_quietly() -> None:
    RedisChanges("redis://127.0.0.1:9/0").publish(environment_channel(1))


def test_a_feed_on_an_unreachable_redis_sleeps_instead_of_failing() -> None:
    async def scenario() -> bool:
        feed = RedisChanges("redis://127.0.0.1:9/0").feed()
        await feed.subscribe([environment_channel(1)])
        heard = await feed.wait(0.2)
        await feed.close()
        return heard

    assert run_in_fresh_loop(scenario(), timeout=30) is False
