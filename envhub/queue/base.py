"""The queue ports: long work goes to workers, change notifications go to open pages,
and every web replica learns which one holds a terminal session.

Jobs are named by dotted path so ``services/`` never imports ``jobs/``.
``enqueue`` may fail (Redis down); callers have already committed the desired
state and a JobRun, so the reconciler re-drives the work later. Nothing is lost.

Change notifications ("environment 12 changed") are best effort by design: the
database holds the truth, and a page that misses one catches up at its next
periodic refresh.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class TerminalOwner:
    """The web process holding a terminal session: where other replicas relay its sockets."""

    address: str  # the process's internal URL (ENVHUB_INTERNAL_URL)
    instance: str  # this run of that process: a restart at the same address is another owner
    environment_id: int


@dataclass(frozen=True, slots=True)
class TerminalEnd:
    """How a terminal session ended, kept a while so a late reconnect can be told."""

    environment_id: int
    code: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class TerminalSummary:
    """What an environment's list of running sessions shows of one, as the replica holding it published it."""

    id: str
    owner: str  # the person who opened it
    container: str
    started: float  # seconds since the epoch
    cols: int
    rows: int
    participants: tuple[tuple[str, str], ...]  # (name, "driver" | "viewer")


class TerminalRegistry(Protocol):
    """Which web process holds each terminal session, and how ended ones ended.

    Shared by every web replica (Redis), or one process's memory without Redis.
    Owner entries expire ``ttl`` seconds after their last claim or refresh, so a
    replica that died without cleaning up stops being named within that time.
    Errors reaching the store are raised: a socket that cannot be routed is refused.

    Each environment's sessions are indexed too, for the list every replica
    answers: an entry claimed is in its environment's index, released or ended
    it leaves it, expired it is no longer listed. What the list shows of a
    session (:class:`TerminalSummary`) is published by its owner, and expires
    like the entry unless published again.
    """

    async def claim(self, terminal_id: str, owner: TerminalOwner, ttl: float) -> TerminalOwner | None:
        """Register ``owner`` if nobody holds ``terminal_id`` (atomic); None then, else the holder."""

    async def owner(self, terminal_id: str) -> TerminalOwner | None: ...

    async def refresh(self, entries: Mapping[str, TerminalOwner], ttl: float) -> None:
        """Extend the entries (id: owner) that still name that owner by ``ttl`` from now."""

    async def release(self, terminal_id: str, owner: TerminalOwner) -> None:
        """Forget ``terminal_id``'s entry if it still names ``owner``."""

    async def end(self, terminal_id: str, owner: TerminalOwner, ended: TerminalEnd, ttl: float) -> None:
        """Release the entry and keep how the session ended for ``ttl`` seconds."""

    async def ended(self, terminal_id: str) -> TerminalEnd | None: ...

    async def publish(self, entries: Sequence[tuple[TerminalOwner, TerminalSummary]], ttl: float) -> None:
        """Show these summaries in their environments' lists for ``ttl`` seconds.

        Each only while its session's entry still names that owner: the summary
        of an entry another owner holds now is not written.
        """

    async def listed(self, environment_id: int) -> list[TerminalSummary]:
        """The environment's running sessions on every replica, as their owners last published them
        (a session claimed but not yet published is left out)."""
