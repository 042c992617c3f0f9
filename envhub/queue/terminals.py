"""Adapters of the terminal registry port: Redis for several web replicas, one process's memory.

In Redis, ``envhub:terminal:owner:<id>`` holds the owner as JSON with an
expiry. A claim is ``SET NX``: of two replicas starting the same id at once,
exactly one wins and the other relays to it. Refreshing, releasing and ending
compare the stored owner first (in a Lua script, so atomically): a replica
never extends or removes an entry another one took over after its own expired
(a refresh puts back an entry that vanished).
``envhub:terminal:ended:<id>`` keeps how a session ended, for any replica a
late reconnect lands on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict
from typing import TypeVar

from redis.asyncio import Redis

from envhub.queue.base import TerminalEnd, TerminalOwner

_T = TypeVar("_T")

OWNER_PREFIX = "envhub:terminal:owner:"
ENDED_PREFIX = "envhub:terminal:ended:"

# KEYS[1]: the owner entry; ARGV[1]: the owner's JSON; ARGV[2]: milliseconds.
# An entry that vanished (Redis restarted, or a replica that could not reach
# the owner took it for gone) is put back; one another owner holds is left alone.
_REFRESH = """
local held = redis.call('GET', KEYS[1])
if held == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if not held then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
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
# KEYS[2]: the tombstone; ARGV[3]: its JSON; ARGV[4]: its milliseconds.
_END = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
return 1
"""


def _owner_json(owner: TerminalOwner) -> str:
    return json.dumps(asdict(owner), sort_keys=True, separators=(",", ":"))


def _owner_of(raw: bytes | str | None) -> TerminalOwner | None:
    if raw is None:
        return None
    value = json.loads(raw)
    return TerminalOwner(str(value["address"]), str(value["instance"]), int(value["environment_id"]))


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class RedisTerminalRegistry:
    def __init__(self, url: str) -> None:
        self._url = url
        self._redis: Redis | None = None

    def _client(self) -> Redis:
        # Built on first use, inside the event loop that will use it (the web process's).
        if self._redis is None:
            self._redis = Redis.from_url(self._url, socket_connect_timeout=2, socket_timeout=5)
        return self._redis

    async def claim(self, terminal_id: str, owner: TerminalOwner, ttl: float) -> TerminalOwner | None:
        redis = self._client()
        key = OWNER_PREFIX + terminal_id
        for _ in range(3):  # the holder's entry may expire between the SET and the GET
            if await redis.set(key, _owner_json(owner), nx=True, px=_ms(ttl)):
                return None
            holder = _owner_of(await redis.get(key))
            if holder is not None:
                return holder
        raise TimeoutError(f"terminal {terminal_id}: its registry entry keeps changing")

    async def owner(self, terminal_id: str) -> TerminalOwner | None:
        return _owner_of(await self._client().get(OWNER_PREFIX + terminal_id))

    async def refresh(self, entries: Mapping[str, TerminalOwner], ttl: float) -> None:
        if not entries:
            return
        script = self._client().register_script(_REFRESH)
        async with self._client().pipeline(transaction=False) as pipe:
            for terminal_id, owner in entries.items():
                key = OWNER_PREFIX + terminal_id
                await script(keys=[key], args=[_owner_json(owner), _ms(ttl)], client=pipe)
            await pipe.execute()

    async def release(self, terminal_id: str, owner: TerminalOwner) -> None:
        script = self._client().register_script(_RELEASE)
        await script(keys=[OWNER_PREFIX + terminal_id], args=[_owner_json(owner)])

    async def end(self, terminal_id: str, owner: TerminalOwner, ended: TerminalEnd, ttl: float) -> None:
        script = self._client().register_script(_END)
        tombstone = json.dumps(asdict(ended), separators=(",", ":"))
        keys = [OWNER_PREFIX + terminal_id, ENDED_PREFIX + terminal_id]
        await script(keys=keys, args=[_owner_json(owner), 0, tombstone, _ms(ttl)])

    async def ended(self, terminal_id: str) -> TerminalEnd | None:
        raw = await self._client().get(ENDED_PREFIX + terminal_id)
        if raw is None:
            return None
        value = json.loads(raw)
        return TerminalEnd(int(value["environment_id"]), value["code"], str(value["reason"]))

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None


class LocalTerminalRegistry:
    """One process without Redis: it is the only replica, so its memory is the registry."""

    def __init__(self) -> None:
        self._owners: dict[str, tuple[TerminalOwner, float]] = {}
        self._ended: dict[str, tuple[TerminalEnd, float]] = {}

    @staticmethod
    def _live(table: dict[str, tuple[_T, float]], key: str) -> _T | None:
        entry = table.get(key)
        if entry is None:
            return None
        if entry[1] <= time.monotonic():
            del table[key]
            return None
        return entry[0]

    async def claim(self, terminal_id: str, owner: TerminalOwner, ttl: float) -> TerminalOwner | None:
        holder = self._live(self._owners, terminal_id)
        if holder is not None:
            return holder
        self._owners[terminal_id] = (owner, time.monotonic() + ttl)
        return None

    async def owner(self, terminal_id: str) -> TerminalOwner | None:
        return self._live(self._owners, terminal_id)

    async def refresh(self, entries: Mapping[str, TerminalOwner], ttl: float) -> None:
        for terminal_id, owner in entries.items():
            holder = self._live(self._owners, terminal_id)
            if holder is None or holder == owner:
                self._owners[terminal_id] = (owner, time.monotonic() + ttl)
        for key in [k for k, (_, until) in self._ended.items() if until <= time.monotonic()]:
            del self._ended[key]

    async def release(self, terminal_id: str, owner: TerminalOwner) -> None:
        if self._live(self._owners, terminal_id) == owner:
            del self._owners[terminal_id]

    async def end(self, terminal_id: str, owner: TerminalOwner, ended: TerminalEnd, ttl: float) -> None:
        await self.release(terminal_id, owner)
        self._ended[terminal_id] = (ended, time.monotonic() + ttl)

    async def ended(self, terminal_id: str) -> TerminalEnd | None:
        return self._live(self._ended, terminal_id)
