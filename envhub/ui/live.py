"""Live pages: reload a page's view model whenever envhub announces a change.

Services and jobs publish "environment 12 changed" through the
change-notification port (``queue/base.py``; Redis pub/sub, or this process's
memory without Redis), and this module subscribes through the same port. A
page mixes in :class:`LiveMixin` and starts ``watch`` from its on-load events: a
Reflex background event that subscribes to the page's channels, reloads on
every message (bursts coalesced) and at least every ``live_refresh_seconds``
(setting, default 3). Notifications are best effort, so the periodic reload is
what guarantees progress: with the bus down the page simply polls. With the
setting at 0 only pushed changes reload a page, except that a page showing the
runtime's own state (which nothing announces) still re-reads it at its own pace
(``_live_poll_seconds``).

The loop ends when the browser moves to another page (the router path changes),
when the same page starts a newer watch (a reload), or when the browser has been
disconnected for :data:`DISCONNECT_GRACE` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import reflex as rx
from reflex.utils.prerequisites import get_and_validate_app

from envhub.config import get_settings
from envhub.errors import Unauthenticated
from envhub.services import ports

log = logging.getLogger(__name__)

# How often the loop wakes without a change when the periodic reload is off,
# to notice a closed tab or a page left.
IDLE_CHECK_SECONDS = 3.0
DISCONNECT_GRACE = 30.0


async def client_connected(token: str) -> bool:
    """Whether the browser tab behind ``token`` still has a socket open.

    Reflex has no public API for this; when the internals differ, assume it is
    connected and rely on the route check and the state's expiry instead.
    """
    try:
        namespace = get_and_validate_app().app.event_namespace
        if namespace is None:
            return True
        return bool(await namespace._token_manager.is_token_connected(token))
    except Exception:
        return True


class LiveMixin(rx.State, mixin=True):
    """Live reloading for a page state.

    The page implements three hooks:

    * ``_live_request()`` (under the state lock): a plain query for the loader
      and the channels to listen to, or ``None`` when there is nothing to watch;
    * ``_live_read(query)`` (a staticmethod, run in a worker thread): opens its
      own session and returns a view model;
    * ``_live_apply(view)`` (under the state lock): stores it.

    A page that also shows what no notification covers (the runtime's own
    state) overrides ``_live_poll_seconds`` to be re-read that often anyway.
    """

    _live_generation: int = 0

    def _live_request(self) -> tuple[Any, list[str]] | None:
        raise NotImplementedError

    @staticmethod
    def _live_read(query: Any) -> Any:
        raise NotImplementedError

    def _live_apply(self, view: Any) -> None:
        raise NotImplementedError

    def _live_poll_seconds(self) -> float:
        """Reload at least this often even with the periodic reload off (0: only on changes)."""
        return 0.0

    def _live_current(self, generation: int, path: str) -> bool:
        return self._live_generation == generation and self.router.page.raw_path == path

    @rx.event(background=True)
    async def watch(self) -> None:
        async with self:
            self._live_generation += 1
            generation = self._live_generation
            path = self.router.page.raw_path
            token = self.router.session.client_token
            request = self._live_request()
            poll = self._live_poll_seconds()
        feed = ports.changes().feed()
        # 0: only pushed changes reload (and the page's own polling, if it has any).
        refresh = min(filter(None, (get_settings().live_refresh_seconds, poll)), default=0.0)
        away_since: float | None = None
        try:
            while request is not None:
                # A change between the page's last read and a new subscription was
                # announced to nobody: reload once right after subscribing.
                subscribed = await feed.subscribe(request[1])
                changed = subscribed or await feed.wait(refresh or IDLE_CHECK_SECONDS)
                if not changed and not await client_connected(token):
                    away_since = away_since or time.monotonic()
                    if time.monotonic() - away_since > DISCONNECT_GRACE:
                        return
                    continue
                away_since = None
                if not changed and not refresh:
                    async with self:
                        if not self._live_current(generation, path):
                            return
                    continue
                async with self:
                    if not self._live_current(generation, path):
                        return
                    request = self._live_request()
                if request is None:
                    return
                query = request[0]
                try:
                    view = await asyncio.to_thread(self._live_read, query)
                except Unauthenticated:  # the session ended (sign-out elsewhere, expiry): stop
                    return
                except Exception:  # keep the page alive; the next tick tries again
                    log.exception("live reload of %s failed", path)
                    continue
                async with self:
                    if not self._live_current(generation, path):
                        return
                    fresh = self._live_request()
                    # The person may have paged meanwhile; a view of the old query is stale.
                    if fresh is not None and fresh[0] == query:
                        self._live_apply(view)
                    request = self._live_request()
        finally:
            await feed.close()
