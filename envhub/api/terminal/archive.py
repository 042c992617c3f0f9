"""Finished recordings go to the object store, when one is configured.

A web replica's data folder is its own (a pod's disk), so a recording left
there could be replayed through that replica only, and is lost with it. When
a session ends, its closed recording is uploaded in a thread (the event loop
never waits on the network), retried with a growing pause (1 s doubling to
:data:`RETRY_MAX_SECONDS`) for as long as the process runs, and removed from
the data folder only once the store holds all of it. The audit record names
the store's copy, so the audit trail replays it on any replica; until the
upload is done, the replica that wrote it serves its local file.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential

from envhub.errors import EnvhubError
from envhub.integrations.object_store import ObjectStore

log = logging.getLogger(__name__)

RETRY_MAX_SECONDS = 30.0


def _failed(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    log.warning(
        "uploading a terminal recording failed (attempt %d, next in %.0f s): %s",
        state.attempt_number,
        wait,
        error,
    )


class Archive:
    """The uploads this process has under way."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def upload(self, store: ObjectStore, key: str, path: Path) -> None:
        """Start uploading ``path`` to ``key``; returns at once."""
        task = asyncio.get_running_loop().create_task(self._upload(store, key, path), name=f"upload {key}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _upload(store: ObjectStore, key: str, path: Path) -> None:
        retrying = AsyncRetrying(
            wait=wait_exponential(multiplier=1, max=RETRY_MAX_SECONDS),
            retry=retry_if_exception_type(EnvhubError),  # the store's errors; a missing file is not retried
            before_sleep=_failed,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    await asyncio.to_thread(store.upload, key, path)
            await asyncio.to_thread(path.unlink, missing_ok=True)
        except asyncio.CancelledError:
            log.warning("terminal recording %s not uploaded (envhub stopped): it stays at %s", key, path)
            raise
        except Exception:
            log.exception("terminal recording %s could not be uploaded: it stays at %s", key, path)

    async def drain(self, timeout: float) -> None:
        """Give the uploads under way up to ``timeout`` seconds (the process is stopping), then stop them."""
        tasks = list(self._tasks)
        if not tasks:
            return
        _, unfinished = await asyncio.wait(tasks, timeout=timeout)
        for task in unfinished:
            task.cancel()
        if unfinished:
            await asyncio.wait(unfinished, timeout=1.0)
