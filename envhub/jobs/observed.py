"""Every job counted: how many ran, of which kind, with which outcome, and how long each took.

Jobs report their outcome as a line for people ("failed: quota_exceeded",
"#42 opened: creating pr-42 at 1a2b3c4d5e6f"); :func:`outcome_of` reduces it
to one of a few words, so the counter's series stay few. A job that raises
counts as ``error`` (RQ then marks it failed).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import ParamSpec

from envhub.metrics import JOB_DURATION, JOBS

P = ParamSpec("P")

# What a job's result line starts with -> its outcome; anything else finished its work: "done".
_OUTCOMES = {
    "ready": "ready",
    "deleted": "deleted",
    "nothing to do": "nothing_to_do",
    "retrying": "retrying",
    "removing": "removing",  # a teardown the runtime finishes by itself (its recheck is queued)
    "failed": "failed",
    "error": "error",
}


def outcome_of(result: object) -> str:
    text = str(result or "").strip().lower()
    for prefix, outcome in _OUTCOMES.items():
        if text == prefix or text.startswith((f"{prefix}:", f"{prefix} ")):
            return outcome
    return "done"


def observed(job: Callable[P, str]) -> Callable[P, str]:
    """Count ``job``'s runs by its function name and outcome, and time them."""
    kind = job.__name__

    @functools.wraps(job)
    def run(*args: P.args, **kwargs: P.kwargs) -> str:
        started = time.perf_counter()
        outcome = "error"
        try:
            result = job(*args, **kwargs)
            outcome = outcome_of(result)
            return result
        finally:
            JOB_DURATION.labels(kind=kind).observe(time.perf_counter() - started)
            JOBS.labels(kind=kind, outcome=outcome).inc()

    return run
