"""Test doubles at envhub's own ports (never for Redis, the database or processes)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from envhub.queue.base import QueueUnavailable


@dataclass
class Enqueued:
    function: str
    args: tuple[object, ...]
    job_id: str


@dataclass
class FakeQueue:
    """An in-memory :class:`envhub.queue.base.JobQueue`.

    ``down`` makes it behave like an unreachable Redis. ``on_enqueue`` runs at
    enqueue time, so a test can look at the database at exactly that moment.
    """

    down: bool = False
    jobs: list[Enqueued] = field(default_factory=list)
    pending: set[str] = field(default_factory=set)
    on_enqueue: Callable[[Enqueued], None] | None = None

    def enqueue(self, function: str, *args: object, job_id: str) -> None:
        if self.down:
            raise QueueUnavailable("connection refused (fake queue is down)")
        job = Enqueued(function, args, job_id)
        if self.on_enqueue is not None:
            self.on_enqueue(job)
        self.jobs.append(job)
        self.pending.add(job_id)

    def is_pending(self, job_id: str) -> bool:
        if self.down:
            raise QueueUnavailable("connection refused (fake queue is down)")
        return job_id in self.pending

    def lose_everything(self) -> None:
        """What a Redis restart without persistence does to queued jobs."""
        self.pending.clear()

    @property
    def job_ids(self) -> list[str]:
        return [job.job_id for job in self.jobs]
