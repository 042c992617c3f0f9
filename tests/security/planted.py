"""What a hostile job names instead of envhub's jobs: each leaves a marker file.

Importable by a worker (the tests run it with the project root on PYTHONPATH),
so if RQ ever called one of them, the marker would show it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def touch(path: str, *_args: object, **_kwargs: object) -> str:
    Path(path).write_text("ran")
    return "ran"


def callback(job: Any, *_args: object, **_kwargs: object) -> None:
    """An RQ callback: the marker's path travels in the job's description."""
    Path(str(job.description)).write_text("ran")
