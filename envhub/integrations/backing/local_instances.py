"""What the embedded backends that run one server per instance share: a lock per instance, starting
a server, finding it again from its pidfile, the tail of its log, its end.

Redis (redis_servers.py) and buckets (embedded_buckets.py) each keep an
instance in ``<folder>/<name>/`` with a server process of its own; any worker
may start, restart or remove it, so every change to an instance happens
under an exclusive lock of that instance, shared by threads and processes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil

from envhub.errors import BackingServiceUnavailable
from envhub.private_files import open_private, private_dir


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


def start_server(argv: list[str], home: Path, *, log: str, timeout: float, what: str) -> None:
    """Run ``argv`` in ``home`` (output appended to ``home/log``): a program that starts the server in a
    session of its own and exits. A failure to start says so, quoting the log's tail."""
    try:
        with open_private(home / log, "ab") as output:
            launcher = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=home,
                start_new_session=True,
                timeout=timeout,
                check=False,
            )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackingServiceUnavailable(f"{what} could not be started ({argv[0]}): {exc}") from exc
    if launcher.returncode != 0:
        raise BackingServiceUnavailable(
            f"{what} of {home.name} exited with status {launcher.returncode}: {log_tail(home / log)}"
        )


def pidfile_process(
    home: Path, pidfile: str, *, is_server: Callable[[psutil.Process], bool]
) -> psutil.Process | None:
    """The live process named in ``home/pidfile`` if ``is_server`` says it is this kind of server and it
    runs in ``home`` (the instance's own folder, which no other server uses); never another program."""
    try:
        pid = int((home / pidfile).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE or not is_server(process):
            return None
        if os.path.realpath(process.cwd()) != os.path.realpath(home):
            return None
    except psutil.Error:
        return None
    return process


def log_tail(path: Path, *, lines: int = 15, scrub: Callable[[str], str] = str) -> str:
    """The last ``lines`` of a server's log (at most 2000 characters), passed through ``scrub``."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return scrub("\n".join(text.splitlines()[-lines:]))[-2000:] or "(empty log)"
