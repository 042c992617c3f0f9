"""Named locks shared by every worker: Redis locks with an expiry.

For state kept outside envhub that its owner replaces whole and without any
precondition (a Cloudflare Tunnel's configuration), so two workers' read-
modify-writes must not interleave. A lock expires after ``timeout`` seconds, so
a worker killed while holding it delays the others at most that long; one not
taken within ``wait`` seconds raises :class:`TimeoutError` (the caller's work is
retried), as does an unreachable Redis.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager

from redis import Redis
from redis.exceptions import LockError, RedisError

KEY_PREFIX = "envhub:lock:"


class RedisLocks:
    def __init__(self, url: str, *, timeout: float = 120.0, wait: float = 60.0) -> None:
        self._redis = Redis.from_url(url)
        self.timeout = timeout
        self.wait = wait

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        lock = self._redis.lock(
            KEY_PREFIX + name, timeout=self.timeout, blocking_timeout=self.wait, thread_local=False
        )
        try:
            taken = lock.acquire()
        except RedisError as exc:
            raise TimeoutError(f"Redis did not answer for the lock {name!r}: {exc}") from exc
        if not taken:
            raise TimeoutError(f"the lock {name!r} was not free within {self.wait:g} s")
        try:
            yield
        finally:
            # Expired meanwhile, or Redis went away: it expires anyway.
            with contextlib.suppress(LockError, RedisError):
                lock.release()
