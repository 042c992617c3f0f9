"""A leader lease in Redis: at most one holder at a time, kept while it lives.

Every worker runs a reconciler; only the lease holder acts. The lease is one
key, taken atomically (``SET NX PX``) and renewed only by its holder (a
compare-and-set script: the key's value must still name the holder), so a
holder that stalled past its lease cannot renew or release what another has
taken since. A holder renews every third of the lease from a thread of its
own, so a long reconciler pass does not lose it; when the holder dies the key
expires and another worker takes over within one lease.

The holder also keeps a local deadline (renewal time + lease): past it, it no
longer acts, even if Redis cannot be asked, so two never act at once while
their clocks tick at the same rate.
"""

from __future__ import annotations

import logging
import threading
import time

from redis import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

_TAKE_OR_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class LeaderLease:
    """``holder``'s claim on ``key`` for ``seconds`` at a time."""

    def __init__(self, connection: Redis, key: str, holder: str, seconds: float) -> None:
        self.connection = connection
        self.key = key
        self.holder = holder
        self.seconds = seconds
        self._valid_until = 0.0
        self._take_or_renew = connection.register_script(_TAKE_OR_RENEW)
        self._release = connection.register_script(_RELEASE)

    def renew(self) -> bool:
        """Take the lease if it is free, or extend it if this holder has it; whether it is held now."""
        asked = time.monotonic()
        was_leading = self.held()
        try:
            taken = bool(self._take_or_renew(keys=[self.key], args=[self.holder, int(self.seconds * 1000)]))
        except RedisError as exc:
            log.warning("leader lease %s: redis unavailable: %s", self.key, exc)
            taken = False
        if taken:
            self._valid_until = asked + self.seconds
        elif was_leading:
            self._valid_until = 0.0
        if taken != was_leading:
            log.info("leader lease %s: %s (%s)", self.key, "now leading" if taken else "lost", self.holder)
        return taken

    def held(self) -> bool:
        """Whether this holder may act now (its last renewal has not run out)."""
        return time.monotonic() < self._valid_until

    def release(self) -> None:
        """Give the lease up if this holder still has it (another may take it at once)."""
        self._valid_until = 0.0
        try:
            self._release(keys=[self.key], args=[self.holder])
        except RedisError as exc:
            log.warning("leader lease %s: not released (it expires by itself): %s", self.key, exc)


class LeaseKeeper(threading.Thread):
    """Renews a lease every third of its length until stopped, then releases it."""

    def __init__(self, lease: LeaderLease) -> None:
        super().__init__(name="envhub-lease", daemon=True)
        self.lease = lease
        self.stopping = threading.Event()

    def run(self) -> None:
        while True:
            self.lease.renew()
            if self.stopping.wait(self.lease.seconds / 3):
                break
        self.lease.release()

    def stop(self) -> None:
        self.stopping.set()
