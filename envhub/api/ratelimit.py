"""Per-client request limits for sign-in, token and webhook endpoints.

Fixed one-window counters in Redis (``queue/counters.py``), shared by every
web process. When Redis cannot be reached the limits still hold, per process, from
an in-memory table: an attacker must not get unlimited tries by taking Redis
down.
"""

from __future__ import annotations

import logging
import threading
import time

from envhub.queue.counters import RedisWindowCounter

log = logging.getLogger(__name__)

# Path prefixes and the limit (setting name) each one counts against.
BUCKETS: tuple[tuple[str, str], ...] = (
    ("/auth/login", "sign_in"),
    ("/auth/callback", "sign_in"),
    ("/auth/local/", "sign_in"),
    ("/auth/device/", "sign_in"),
    ("/api/v1/tokens", "tokens"),
    ("/webhooks/", "webhooks"),
    # Each may cost a TokenReview against the cluster (a workspace's token), and a GitHub call.
    ("/api/v1/environment-identity/", "git_credentials"),
)


def bucket_of(path: str) -> str | None:
    for prefix, bucket in BUCKETS:
        if path == prefix.rstrip("/") or path.startswith(prefix if prefix.endswith("/") else prefix + "/"):
            return bucket
    return None


class RateLimiter:
    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self._shared = RedisWindowCounter(redis_url)
        self._lock = threading.Lock()
        self._local: dict[str, tuple[int, int]] = {}  # key -> (window, count)

    async def hit(self, bucket: str, client: str, *, limit: int, window: int) -> tuple[bool, int]:
        """Count a request; (allowed, seconds until the window resets)."""
        slot = int(time.time() // window)
        key = f"envhub:rate:{bucket}:{client}:{slot}"
        reset = window - int(time.time() % window)
        count = await self._shared.hit(key, window)
        if count is None:
            count = self._local_hit(key, slot)
        return count <= limit, max(1, reset)

    def _local_hit(self, key: str, slot: int) -> int:
        with self._lock:
            if len(self._local) > 100_000:  # forget old windows
                self._local = {k: v for k, v in self._local.items() if v[0] >= slot}
            _, count = self._local.get(key, (slot, 0))
            self._local[key] = (slot, count + 1)
            return count + 1
