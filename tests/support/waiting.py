"""Polling with generous deadlines: tests wait for outcomes, never assert on speed."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    check: Callable[[], T],
    *,
    timeout: float = 60.0,
    interval: float = 0.1,
    what: str = "the condition",
    describe: Callable[[], str] | None = None,
) -> T:
    """Call ``check`` until it returns something truthy, and return that.

    Fails the test (with ``describe()`` appended, e.g. a log tail) when the
    deadline passes; the deadline is a safety net, not a performance target.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            extra = f"\n{describe()}" if describe else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{extra}")
        time.sleep(interval)


def wait_ended(process: subprocess.Popen[bytes], *, grace: float = 10.0) -> None:
    """Stop a server the tests started: TERM, and KILL if it is still there after ``grace``."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(grace)
