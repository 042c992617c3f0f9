"""An environment's last activity, recorded cheaply.

Activity is what keeps a development environment awake and alive: HTTP traffic
through its URL (the gateway), terminal input, commands and file or process
operations, and CLI/REST/MCP calls on it. Any of them may come many times a
second, so :func:`note` costs a dictionary lookup on the hot path and writes at
most once per environment per ``activity_write_interval`` seconds in each
process, on a thread of its own (a request never waits for the database).
Idle sleep and TTLs count in minutes and hours: a write a minute late changes
nothing, and one lost when a process dies is made by the next activity.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime

from sqlalchemy import or_, update
from sqlmodel import col

from envhub.config import get_settings
from envhub.models import Environment
from envhub.models.base import utcnow
from envhub.models.db import session_scope

log = logging.getLogger(__name__)

# Environments remembered (the least recently noted ones are forgotten first).
_MAX_TRACKED = 10_000


class _Coalescer:
    """Which environments are due a write now, per process."""

    def __init__(self) -> None:
        self._written: dict[int, float] = {}
        self._lock = threading.Lock()

    def due(self, environment_id: int, interval: float) -> bool:
        now = time.monotonic()
        with self._lock:
            last = self._written.get(environment_id)
            if last is not None and now - last < interval:
                return False
            self._written.pop(environment_id, None)
            self._written[environment_id] = now  # newest last: the oldest are forgotten first
            if len(self._written) > _MAX_TRACKED:
                for stale in list(self._written)[: len(self._written) - _MAX_TRACKED]:
                    del self._written[stale]
            return True

    def forget(self) -> None:
        with self._lock:
            self._written.clear()


_coalescer = _Coalescer()
_writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="envhub-activity")
_pending: list[Future[None]] = []
_pending_lock = threading.Lock()


def note(environment_id: int) -> None:
    """Someone used the environment just now (never raises, never waits for the database)."""
    if not _coalescer.due(environment_id, get_settings().activity_write_interval):
        return
    future = _writer.submit(_write, environment_id, utcnow())
    with _pending_lock:
        _pending[:] = [f for f in _pending if not f.done()]
        _pending.append(future)


def flush(timeout: float = 10.0) -> None:
    """Wait for the writes noted so far (tests, and a process about to exit)."""
    with _pending_lock:
        waiting = list(_pending)
    for future in waiting:
        future.result(timeout=timeout)


def forget() -> None:
    """Forget when each environment was last written (tests: each starts afresh)."""
    _coalescer.forget()


def _write(environment_id: int, when: datetime) -> None:
    try:
        with session_scope() as session:
            session.execute(
                update(Environment)
                .where(
                    col(Environment.id) == environment_id,
                    or_(col(Environment.last_active_at).is_(None), col(Environment.last_active_at) < when),
                )
                .values(last_active_at=when)
            )
            session.commit()
    except Exception:  # activity is advisory: the next one writes again
        log.warning("could not record activity of environment %s", environment_id, exc_info=True)
