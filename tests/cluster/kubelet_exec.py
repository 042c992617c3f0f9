"""Exec for the test kubelet: run the command locally, stream it over the channel protocol."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import struct
import subprocess
import termios
import threading
from dataclasses import dataclass
from typing import IO

import wschannel as ws
from processes import die_with_parent


@dataclass(frozen=True)
class ExecTarget:
    env: dict[str, str]
    cwd: str


def _start_terminal_session() -> None:
    # The PTY becomes the controlling terminal: shells get job control and ^C.
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    die_with_parent()


class ExecSession:
    """One exec: a local process wired to the channels of an upgraded WebSocket."""

    def __init__(
        self,
        channel: ws.ChannelSocket,
        command: list[str],
        target: ExecTarget,
        *,
        stdin: bool,
        stdout: bool,
        stderr: bool,
        tty: bool,
    ) -> None:
        self.ch = channel
        self.command = command
        self.target = target
        self.want = {ws.STDIN: stdin, ws.STDOUT: stdout, ws.STDERR: stderr}
        self.tty = tty
        self._stdin: IO[bytes] | None = None
        self._master: int | None = None

    def run(self, conn: socket.socket) -> None:
        try:
            proc = self._spawn()
        except OSError as e:
            # Like a runtime's "executable file not found": exit code 126/127.
            code = 127 if isinstance(e, FileNotFoundError) else 126
            self._send_quiet(ws.STDERR, f"exec failed: {e}\n".encode())
            self._send_quiet(ws.STATUS, ws.exit_status(code, self.command))
            self.ch.close()
            return
        readers = self._start_readers(proc)
        pump = threading.Thread(target=self._pump_input, args=(proc,), daemon=True)
        pump.start()
        code = proc.wait()
        # Output may lag behind the exit; a background grandchild holding the pipe
        # must not hold the session open forever.
        for t in readers:
            t.join(timeout=2)
        if code < 0:
            code = 128 - code  # killed by a signal, as a shell reports it
        self._send_quiet(ws.STATUS, ws.exit_status(code, self.command))
        self.ch.close()
        pump.join(timeout=2)  # the client answers our close frame
        if pump.is_alive():
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._master is not None:
            os.close(self._master)

    def _spawn(self) -> subprocess.Popen[bytes]:
        cwd, env = self.target.cwd, self.target.env
        if not self.tty:
            pipe, null = subprocess.PIPE, subprocess.DEVNULL
            proc = subprocess.Popen(
                self.command,
                stdin=pipe if self.want[ws.STDIN] else null,
                stdout=pipe if self.want[ws.STDOUT] else null,
                stderr=pipe if self.want[ws.STDERR] else null,
                cwd=cwd,
                env=env,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
            self._stdin = proc.stdin
            return proc
        master, slave = os.openpty()
        try:
            proc = subprocess.Popen(
                self.command,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                cwd=cwd,
                env=env,
                start_new_session=True,
                preexec_fn=_start_terminal_session,
            )
        except OSError:
            os.close(master)
            raise
        finally:
            os.close(slave)  # the child has it; the master sees EIO once it exits
        self._master = master
        return proc

    def _start_readers(self, proc: subprocess.Popen[bytes]) -> list[threading.Thread]:
        sources: list[tuple[int, int]] = []
        if self._master is not None:
            sources.append((self._master, ws.STDOUT))
        else:
            if proc.stdout is not None:
                sources.append((proc.stdout.fileno(), ws.STDOUT))
            if proc.stderr is not None:
                sources.append((proc.stderr.fileno(), ws.STDERR))
        threads = [threading.Thread(target=self._copy_out, args=src, daemon=True) for src in sources]
        for t in threads:
            t.start()
        return threads

    def _copy_out(self, fd: int, channel: int) -> None:
        while True:
            try:
                data = os.read(fd, 32 * 1024)
            except OSError:  # EIO: the PTY's last slave fd closed
                return
            if not data:
                return
            if not self._send_quiet(channel, data):
                return

    def _send_quiet(self, channel: int, data: bytes) -> bool:
        try:
            self.ch.send(channel, data)
            return True
        except OSError:
            return False

    def _pump_input(self, proc: subprocess.Popen[bytes]) -> None:
        while (msg := self.ch.receive()) is not None:
            channel, data = msg
            if channel == ws.STDIN and self.want[ws.STDIN]:
                self._write_stdin(data)
            elif channel == ws.RESIZE and self._master is not None:
                self._resize(data)
            elif channel == ws.CLOSE and self.ch.protocol == ws.V5 and data[:1] == b"\0":
                self._close_stdin()
        if proc.poll() is None:  # the client left before the command ended
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

    def _write_stdin(self, data: bytes) -> None:
        try:
            if self._master is not None:
                os.write(self._master, data)
            elif self._stdin is not None:
                self._stdin.write(data)
                self._stdin.flush()
        except OSError:
            pass

    def _close_stdin(self) -> None:
        if self._master is not None:
            self._write_stdin(b"\x04")  # a terminal's EOF is ^D
        elif self._stdin is not None:
            with contextlib.suppress(OSError):
                self._stdin.close()
            self._stdin = None

    def _resize(self, data: bytes) -> None:
        try:
            size = json.loads(data)
            winsize = struct.pack("HHHH", int(size["Height"]), int(size["Width"]), 0, 0)
            assert self._master is not None
            fcntl.ioctl(self._master, termios.TIOCSWINSZ, winsize)
        except (ValueError, KeyError, TypeError, OSError):
            pass
