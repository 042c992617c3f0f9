"""Fixed-window request counters in Redis (``INCR`` + ``EXPIRE``), shared by every web process.

The rate limiter (``api/ratelimit.py``) keeps its own in-memory fallback: a
counter that cannot reach Redis answers ``None`` and backs off for a while.
"""

from __future__ import annotations

import logging
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

RETRY_SECONDS = 10.0


class RedisWindowCounter:
    def __init__(self, url: str) -> None:
        self._url = url
        self._redis: Redis | None = None
        self._retry_at = 0.0

    async def hit(self, key: str, window: int) -> int | None:
        """Count one hit of ``key`` in a window of ``window`` seconds; None when Redis is away."""
        if not self._url or time.monotonic() < self._retry_at:
            return None
        try:
            if self._redis is None:
                self._redis = Redis.from_url(self._url, socket_connect_timeout=1, socket_timeout=1)
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incr(key)
                pipe.expire(key, window + 1, nx=True)
                count, _ = await pipe.execute()
            return int(count)
        except (RedisError, OSError) as exc:
            log.warning("rate limits fall back to this process's memory: %s", exc)
            self._retry_at = time.monotonic() + RETRY_SECONDS
            self._redis = None
            return None
