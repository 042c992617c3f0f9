"""Exec sessions on the local runtime: a process on a PTY (or pipes) in the sandbox."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import pty
import select
import struct
import subprocess
import termios

import psutil

from envhub.runtime.local.processes import kill_tree


class LocalExecSession:
    """One process attached to a PTY; implements :class:`envhub.runtime.base.ExecSession`."""

    def __init__(
        self, argv: list[str], *, cwd: str, env: dict[str, str], tty: bool, pass_fds: list[int] | None = None
    ) -> None:
        """Start ``argv``; ``env`` is the launcher's environment, ``pass_fds`` what it reads."""
        self._tty = tty
        if tty:
            self._master, slave = pty.openpty()
            stdio: int = slave
        else:
            read_end, write_end = os.pipe()
            self._master = read_end
            slave = write_end
            stdio = write_end
        # With a PTY, ``setsid --ctty`` makes it the controlling terminal of a
        # new session, so the shell has job control and Ctrl-C reaches the
        # foreground job. (Popen's own start_new_session gives no terminal.)
        self._popen = subprocess.Popen(
            ["setsid", "--ctty", *argv] if tty else argv,
            cwd=cwd,
            env=env,
            stdin=stdio if tty else subprocess.PIPE,
            stdout=stdio,
            stderr=stdio,
            start_new_session=not tty,
            close_fds=True,
            pass_fds=tuple(pass_fds or ()),
        )
        os.close(slave)
        os.set_blocking(self._master, False)

    @property
    def pid(self) -> int:
        return self._popen.pid

    def fileno(self) -> int:
        return self._master

    def read(self, max_bytes: int = 65536, timeout: float | None = None) -> bytes:
        ready, _, _ = select.select([self._master], [], [], timeout)
        if not ready:
            raise TimeoutError("no output within the timeout")
        data = self.read_nowait(max_bytes)
        if data is None:
            raise TimeoutError("no output within the timeout")
        return data

    def read_nowait(self, max_bytes: int = 65536) -> bytes | None:
        try:
            return os.read(self._master, max_bytes)
        except BlockingIOError:
            return None
        except OSError as exc:
            # EIO is how a PTY reports that the last process holding it exited.
            if exc.errno in (errno.EIO, errno.EBADF):
                return b""
            raise

    def write(self, data: bytes) -> None:
        if self._tty:
            view = memoryview(data)
            while view:
                try:
                    written = os.write(self._master, view)
                except BlockingIOError:
                    select.select([], [self._master], [], 1.0)
                    continue
                view = view[written:]
        elif self._popen.stdin is not None:
            self._popen.stdin.write(data)
            self._popen.stdin.flush()

    def write_nowait(self, data: bytes) -> int:
        if not self._tty:
            self.write(data)
            return len(data)
        try:
            return os.write(self._master, data)
        except BlockingIOError:
            return 0

    def resize(self, columns: int, rows: int) -> None:
        if self._tty:
            fcntl.ioctl(self._master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))

    def wait(self, timeout: float | None = None) -> int | None:
        try:
            return self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        if self._popen.poll() is None:
            with contextlib.suppress(psutil.Error):
                kill_tree(psutil.Process(self._popen.pid), grace=1.0)
            self._popen.wait(5)
        # Idempotent: a second close must not close a descriptor number reused since.
        master, self._master = self._master, -1
        if master >= 0:
            with contextlib.suppress(OSError):
                os.close(master)
