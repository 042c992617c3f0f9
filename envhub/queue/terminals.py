"""Adapters of the terminal registry port: Redis for several web replicas, one process's memory.

In Redis, ``envhub:terminal:owner:<id>`` holds the owner as JSON with an
expiry. A claim is ``SET NX``: of two replicas starting the same id at once,
exactly one wins and the other relays to it. Refreshing, releasing and ending
compare the stored owner first (in a Lua script, so atomically): a replica
never extends or removes an entry another one took over after its own expired
(a refresh puts back an entry that vanished).
``envhub:terminal:ended:<id>`` keeps how a session ended, for any replica a
late reconnect lands on.

``envhub:terminal:env:<environment id>`` indexes an environment's sessions: a
sorted set of session ids scored by when their entry expires (Redis's own
clock, read inside the scripts), added to by a claim, a refresh and a
publish, and left by a release or an end, in the same script as the owner
entry; listing drops the members whose time passed. ``envhub:terminal:summary:<id>``
holds what the list shows of a session, written by its owner only while the
owner entry names it, and expiring with it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import TypeVar

from redis.asyncio import Redis

from envhub.queue.base import TerminalEnd, TerminalOwner, TerminalSummary

_T = TypeVar("_T")

OWNER_PREFIX = "envhub:terminal:owner:"
ENDED_PREFIX = "envhub:terminal:ended:"
ENVIRONMENT_PREFIX = "envhub:terminal:env:"
SUMMARY_PREFIX = "envhub:terminal:summary:"

# Index a session until ARGV ms from now: KEYS[2] the index, ARGV[3] the id.
_INDEX = """
local function index(key, id, ms)
  local now = redis.call('TIME')
  local until_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + tonumber(ms)
  redis.call('ZADD', key, until_ms, id)
  redis.call('PEXPIRE', key, ms)
end
"""
# KEYS[1]: the owner entry, KEYS[2]: the environment's index; ARGV[1]: the owner's JSON,
# ARGV[2]: milliseconds, ARGV[3]: the session id. Nil when claimed, else the holder's JSON.
_CLAIM = (
    _INDEX
    + """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  index(KEYS[2], ARGV[3], ARGV[2])
  return false
end
return redis.call('GET', KEYS[1])
"""
)

# KEYS[1]: the owner entry; ARGV[1]: the owner's JSON; ARGV[2]: milliseconds.
# An entry that vanished (Redis restarted, or a replica that could not reach
# the owner took it for gone) is put back; one another owner holds is left alone.
# (KEYS[2], ARGV[3] as in _CLAIM.)
_REFRESH = (
    _INDEX
    + """
local held = redis.call('GET', KEYS[1])
if held == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
elseif not held then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
else
  return 0
end
index(KEYS[2], ARGV[3], ARGV[2])
return 1
"""
)
# KEYS[2]: the environment's index, KEYS[3]: the summary; ARGV[2]: the session id.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('ZREM', KEYS[2], ARGV[2])
  redis.call('DEL', KEYS[3])
  return redis.call('DEL', KEYS[1])
end
return 0
"""
# KEYS[4]: the tombstone; ARGV[3]: its JSON; ARGV[4]: its milliseconds.
_END = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('ZREM', KEYS[2], ARGV[2])
  redis.call('DEL', KEYS[3])
  redis.call('DEL', KEYS[1])
end
redis.call('SET', KEYS[4], ARGV[3], 'PX', ARGV[4])
return 1
"""
# KEYS[1]: the owner entry, KEYS[2]: the index, KEYS[3]: the summary; ARGV[1]: the owner's JSON,
# ARGV[2]: milliseconds, ARGV[3]: the session id, ARGV[4]: the summary's JSON.
_PUBLISH = (
    _INDEX
    + """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[3], ARGV[4], 'PX', ARGV[2])
index(KEYS[2], ARGV[3], ARGV[2])
return 1
"""
)
# KEYS[1]: the index. The ids whose time has not passed (the others are dropped).
_LIVE = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""


def _owner_json(owner: TerminalOwner) -> str:
    return json.dumps(asdict(owner), sort_keys=True, separators=(",", ":"))


def _owner_of(raw: bytes | str | None) -> TerminalOwner | None:
    if raw is None:
        return None
    value = json.loads(raw)
    return TerminalOwner(str(value["address"]), str(value["instance"]), int(value["environment_id"]))


def _summary_json(summary: TerminalSummary) -> str:
    return json.dumps(asdict(summary), separators=(",", ":"))


def _summary_of(raw: bytes | str) -> TerminalSummary:
    value = json.loads(raw)
    return TerminalSummary(
        id=str(value["id"]),
        owner=str(value["owner"]),
        container=str(value["container"]),
        started=float(value["started"]),
        cols=int(value["cols"]),
        rows=int(value["rows"]),
        participants=tuple((str(name), str(role)) for name, role in value["participants"]),
    )


def _index_key(owner: TerminalOwner) -> str:
    return ENVIRONMENT_PREFIX + str(owner.environment_id)


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
        script = self._client().register_script(_CLAIM)
        keys = [OWNER_PREFIX + terminal_id, _index_key(owner)]
        return _owner_of(await script(keys=keys, args=[_owner_json(owner), _ms(ttl), terminal_id]))

    async def owner(self, terminal_id: str) -> TerminalOwner | None:
        return _owner_of(await self._client().get(OWNER_PREFIX + terminal_id))

    async def refresh(self, entries: Mapping[str, TerminalOwner], ttl: float) -> None:
        if not entries:
            return
        script = self._client().register_script(_REFRESH)
        async with self._client().pipeline(transaction=False) as pipe:
            for terminal_id, owner in entries.items():
                keys = [OWNER_PREFIX + terminal_id, _index_key(owner)]
                await script(keys=keys, args=[_owner_json(owner), _ms(ttl), terminal_id], client=pipe)
            await pipe.execute()

    async def release(self, terminal_id: str, owner: TerminalOwner) -> None:
        script = self._client().register_script(_RELEASE)
        keys = [OWNER_PREFIX + terminal_id, _index_key(owner), SUMMARY_PREFIX + terminal_id]
        await script(keys=keys, args=[_owner_json(owner), terminal_id])

    async def end(self, terminal_id: str, owner: TerminalOwner, ended: TerminalEnd, ttl: float) -> None:
        script = self._client().register_script(_END)
        tombstone = json.dumps(asdict(ended), separators=(",", ":"))
        keys = [
            OWNER_PREFIX + terminal_id,
            _index_key(owner),
            SUMMARY_PREFIX + terminal_id,
            ENDED_PREFIX + terminal_id,
        ]
        await script(keys=keys, args=[_owner_json(owner), terminal_id, tombstone, _ms(ttl)])

    async def publish(self, entries: Sequence[tuple[TerminalOwner, TerminalSummary]], ttl: float) -> None:
        if not entries:
            return
        script = self._client().register_script(_PUBLISH)
        async with self._client().pipeline(transaction=False) as pipe:
            for owner, summary in entries:
                keys = [OWNER_PREFIX + summary.id, _index_key(owner), SUMMARY_PREFIX + summary.id]
                args: list[str | int] = [_owner_json(owner), _ms(ttl), summary.id, _summary_json(summary)]
                await script(keys=keys, args=args, client=pipe)
            await pipe.execute()

    async def listed(self, environment_id: int) -> list[TerminalSummary]:
        redis = self._client()
        live = redis.register_script(_LIVE)
        ids = [
            i.decode() if isinstance(i, bytes) else str(i)
            for i in await live(keys=[ENVIRONMENT_PREFIX + str(environment_id)])
        ]
        if not ids:
            return []
        found = await redis.mget([SUMMARY_PREFIX + terminal_id for terminal_id in ids])
        return [_summary_of(raw) for raw in found if raw is not None]

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
        self._summaries: dict[str, tuple[TerminalSummary, float]] = {}

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
            self._summaries.pop(terminal_id, None)

    async def end(self, terminal_id: str, owner: TerminalOwner, ended: TerminalEnd, ttl: float) -> None:
        await self.release(terminal_id, owner)
        self._ended[terminal_id] = (ended, time.monotonic() + ttl)

    async def ended(self, terminal_id: str) -> TerminalEnd | None:
        return self._live(self._ended, terminal_id)

    async def publish(self, entries: Sequence[tuple[TerminalOwner, TerminalSummary]], ttl: float) -> None:
        for owner, summary in entries:
            if self._live(self._owners, summary.id) == owner:
                self._summaries[summary.id] = (summary, time.monotonic() + ttl)

    async def listed(self, environment_id: int) -> list[TerminalSummary]:
        found = []
        for terminal_id in list(self._summaries):
            owner = self._live(self._owners, terminal_id)
            summary = self._live(self._summaries, terminal_id)
            if owner is not None and summary is not None and owner.environment_id == environment_id:
                found.append(summary)
        return found
