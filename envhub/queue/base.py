"""The queue ports: long work goes to workers, change notifications go to open pages.

Jobs are named by dotted path so ``services/`` never imports ``jobs/``.
``enqueue`` may fail (Redis down); callers have already committed the desired
state and a JobRun, so the reconciler re-drives the work later. Nothing is lost.

Change notifications ("environment 12 changed") are best effort by design: the
database holds the truth, and a page that misses one catches up at its next
periodic refresh.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol


class JobQueue(Protocol):
    def enqueue(self, function: str, *args: object, job_id: str) -> None:
        """Queue ``function(*args)``; raises ``QueueUnavailable`` if it cannot."""

    def is_pending(self, job_id: str) -> bool:
        """True while the job is queued, scheduled or running as far as the queue knows."""


class QueueUnavailable(Exception):
    """The queue could not be reached; the work stays recorded in the database."""


class ChangeFeed(Protocol):
    """One page's subscription. Never raises: an unreachable bus makes ``wait`` a plain sleep."""

    async def subscribe(self, channels: Iterable[str]) -> bool:
        """Listen to exactly ``channels`` from now on (the page may change what it shows).

        True when some channels are new: what changed on them before now was
        announced to nobody, so the caller should read once more.
        """

    async def wait(self, timeout: float) -> bool:
        """True when a change arrived within ``timeout`` (a burst counts once); False on timeout."""

    async def close(self) -> None:
        """Stop listening; safe to call twice."""


class ChangeNotifier(Protocol):
    """The change-notification port: publish from anywhere, subscribe from live pages."""

    def publish(self, *channels: str) -> None:
        """Announce that what ``channels`` name changed; never raises."""

    def feed(self) -> ChangeFeed:
        """A new subscription (closed by the caller)."""
