"""Adapters of the change-notification port: Redis pub/sub, and one process's memory.

Redis reaches every web process (and hears the workers); the in-process bus is
for a single process without Redis (tests, a dashboard run without workers).
Both degrade rather than fail: a feed that cannot listen just sleeps, and the
page's periodic refresh keeps it right.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterable

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from envhub.queue.base import ChangeFeed
from envhub.queue.redis_queue import redis_connection

log = logging.getLogger(__name__)

# A job reports several steps in quick succession: one reload for the burst.
COALESCE_SECONDS = 0.15
REDIS_RETRY_SECONDS = 10.0


class RedisChanges:
    def __init__(self, url: str) -> None:
        self._url = url

    def publish(self, *channels: str) -> None:
        try:
            connection = redis_connection(self._url)
            for channel in channels:
                connection.publish(channel, b"1")
        except RedisError as exc:
            log.debug("change notification dropped: %s", exc)

    def feed(self) -> ChangeFeed:
        return RedisFeed(self._url)


class RedisFeed:
    """A pub/sub subscription that degrades to plain sleeping while Redis is away."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._redis: Redis | None = None
        self._pubsub: PubSub | None = None
        self._channels: set[str] = set()
        self._retry_at = 0.0

    async def subscribe(self, channels: Iterable[str]) -> bool:
        wanted = set(channels)
        if not self._url or time.monotonic() < self._retry_at:
            return False
        new: set[str] = set()
        try:
            if self._pubsub is None:
                self._redis = Redis.from_url(self._url, socket_connect_timeout=2)
                self._pubsub = self._redis.pubsub()
                self._channels = set()
            if gone := self._channels - wanted:
                await self._pubsub.unsubscribe(*gone)
            if new := wanted - self._channels:
                await self._pubsub.subscribe(*new)
            self._channels = wanted
        except (RedisError, OSError) as exc:
            log.debug("live updates fall back to polling: %s", exc)
            await self._drop()
            return False
        return bool(new)

    async def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        if self._pubsub is None or not self._channels:
            await asyncio.sleep(timeout)
            return False
        try:
            while (left := deadline - time.monotonic()) > 0:
                message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
                if message is None:
                    continue
                await asyncio.sleep(COALESCE_SECONDS)
                while await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=0):
                    pass
                return True
        except (RedisError, OSError) as exc:
            log.debug("live updates lost Redis, polling: %s", exc)
            await self._drop()
            await asyncio.sleep(max(0.0, deadline - time.monotonic()))
        return False

    async def _drop(self) -> None:
        self._retry_at = time.monotonic() + REDIS_RETRY_SECONDS
        await self.close()

    async def close(self) -> None:
        pubsub, redis, self._pubsub, self._redis = self._pubsub, self._redis, None, None
        self._channels = set()
        with contextlib.suppress(Exception):  # closing a broken connection may fail too
            if pubsub is not None:
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            if redis is not None:
                await redis.aclose()


class LocalChanges:
    """Notifications within this process: publishers in any thread, feeds on event loops."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._feeds: set[LocalFeed] = set()

    def publish(self, *channels: str) -> None:
        with self._lock:
            feeds = list(self._feeds)
        for feed in feeds:
            feed.deliver(channels)

    def feed(self) -> ChangeFeed:
        feed = LocalFeed(self)
        with self._lock:
            self._feeds.add(feed)
        return feed

    def _forget(self, feed: LocalFeed) -> None:
        with self._lock:
            self._feeds.discard(feed)


class LocalFeed:
    def __init__(self, bus: LocalChanges) -> None:
        self._bus = bus
        self._channels: frozenset[str] = frozenset()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None

    def deliver(self, channels: Iterable[str]) -> None:
        loop, event = self._loop, self._event
        if loop is None or event is None or self._channels.isdisjoint(channels):
            return
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody listens any more
            loop.call_soon_threadsafe(event.set)

    async def subscribe(self, channels: Iterable[str]) -> bool:
        if self._event is None:
            self._loop, self._event = asyncio.get_running_loop(), asyncio.Event()
        wanted = frozenset(channels)
        new = wanted - self._channels
        self._channels = wanted
        return bool(new)

    async def wait(self, timeout: float) -> bool:
        if self._event is None:
            await asyncio.sleep(timeout)
            return False
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            return False
        await asyncio.sleep(COALESCE_SECONDS)
        self._event.clear()
        return True

    async def close(self) -> None:
        self._bus._forget(self)
        self._channels = frozenset()
