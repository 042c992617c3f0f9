"""Running a coroutine from a synchronous test."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_in_fresh_loop(coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """``asyncio.run`` in a thread of its own: earlier tests in the same process
    (Playwright's sync API) may leave an event loop running in this one."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as executor:
        return executor.submit(asyncio.run, coroutine).result(timeout)
