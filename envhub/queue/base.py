"""The queue port: services hand long work to workers through it.

Jobs are named by dotted path so ``services/`` never imports ``jobs/``.
``enqueue`` may fail (Redis down); callers have already committed the desired
state and a JobRun, so the reconciler re-drives the work later. Nothing is lost.
"""

from __future__ import annotations

from typing import Protocol


class JobQueue(Protocol):
    def enqueue(self, function: str, *args: object, job_id: str) -> None:
        """Queue ``function(*args)``; raises ``QueueUnavailable`` if it cannot."""

    def is_pending(self, job_id: str) -> bool:
        """True while the job is queued, scheduled or running as far as the queue knows."""


class QueueUnavailable(Exception):
    """The queue could not be reached; the work stays recorded in the database."""
