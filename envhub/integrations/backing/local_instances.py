"""What the embedded backends that run one server per instance share: a lock per instance, an end.

Redis (redis_servers.py) and buckets (embedded_buckets.py) each keep an
instance in ``<folder>/<name>/`` with a server process of its own; any worker
may start, restart or remove it, so every change to an instance happens
under an exclusive lock of that instance, shared by threads and processes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

from envhub.private_files import private_dir


@contextlib.contextmanager
def instance_lock(folder: Path, name: str) -> Iterator[Path]:
    """An exclusive flock on ``<folder>/.locks/<name>.lock`` (threads and processes alike); yields its path.

    A ``remove`` deletes the lock file while holding it; whoever was waiting
    on the deleted file notices (another inode now, or none) and locks again,
    so two holders never coexist.
    """
    path = private_dir(folder / ".locks") / f"{name}.lock"
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            with contextlib.suppress(FileNotFoundError):
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    break
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    try:
        yield path
    finally:
        os.close(fd)


def ended(process: psutil.Process, *, timeout: float) -> bool:
    """Whether ``process`` ended within ``timeout``. A zombie has ended: its parent (init, for a
    daemon) reaps it when it gets to it, which psutil.wait_procs would wait for."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
