"""A background process's output file, kept under a size limit by dropping its oldest bytes.

Standard library only: the wrapper that runs a background process
(``python -I -S output_cap.py run OUT STATUS LIMIT FDS -- argv``) imports this
file as a script, and envhub imports it as a module to read what was kept.

The file starts with a fixed-size header, the number of bytes dropped from
the head so far, then the output kept. When what is kept passes ``limit``,
the newest half is copied to a new file (header updated) that replaces the
old one atomically (``rename``), so a reader that opened either file sees a
header and bytes that belong together. Offsets count from the first byte the
process ever printed: dropping the head moves where the file begins, never
what an offset means. Copying half of the limit once per half of the limit
written keeps the extra disk writes at one copy of the output.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass

HEADER = 20  # "%019d\n": the bytes dropped so far
CHUNK = 65536


def header(dropped: int) -> bytes:
    return b"%019d\n" % dropped


def create(path: str) -> None:
    """An empty output file (nothing dropped), private to envhub."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, header(0))
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class Kept:
    """A read of the output: ``data`` begins at absolute ``offset``; ``dropped`` bytes are gone."""

    data: bytes
    offset: int
    size: int  # bytes printed so far, dropped ones included
    dropped: int


def read(path: str, offset: int, limit: int) -> Kept:
    """At most ``limit`` bytes from absolute ``offset`` (from the oldest kept byte when that was dropped)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return Kept(b"", 0, 0, 0)
    with os.fdopen(fd, "rb") as handle:
        first = handle.read(HEADER)
        dropped = int(first) if len(first) == HEADER and first[:-1].isdigit() else 0
        kept = max(0, os.fstat(handle.fileno()).st_size - HEADER)
        start = max(offset, dropped)
        if start >= dropped + kept:
            return Kept(b"", start, dropped + kept, dropped)
        handle.seek(HEADER + start - dropped)
        return Kept(handle.read(limit), start, dropped + kept, dropped)


class CappedWriter:
    """Appends to the output file, dropping the oldest half whenever more than ``limit`` bytes are kept."""

    def __init__(self, path: str, limit: int) -> None:
        self.path = path
        self.limit = max(2 * CHUNK, limit)
        self._file = open(path, "r+b")  # noqa: SIM115 - held for the process's life
        first = self._file.read(HEADER)
        self.dropped = int(first) if len(first) == HEADER and first[:-1].isdigit() else 0
        self.kept = max(0, os.fstat(self._file.fileno()).st_size - HEADER)
        self._file.seek(0, os.SEEK_END)

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self._file.flush()
        self.kept += len(data)
        if self.kept > self.limit:
            self._drop_head()

    def _drop_head(self) -> None:
        keep = self.limit // 2
        drop = self.kept - keep
        temporary = self.path + ".new"
        with open(temporary, "wb") as fresh:
            os.fchmod(fresh.fileno(), 0o600)
            fresh.write(header(self.dropped + drop))
            self._file.seek(HEADER + drop)
            while block := self._file.read(CHUNK):
                fresh.write(block)
        os.replace(temporary, self.path)
        self._file.close()
        self._file = open(self.path, "r+b")  # noqa: SIM115
        self._file.seek(0, os.SEEK_END)
        self.dropped += drop
        self.kept = keep

    def close(self) -> None:
        self._file.close()


def run(out: str, status: str, limit: int, argv: list[str], pass_fds: tuple[int, ...] = ()) -> int:
    """Run ``argv``, its output (stdout and stderr) capped into ``out``; write its exit code to ``status``.

    SIGTERM to this process is passed on to ``argv``; envhub stops a process
    by signalling the sandbox below, so this one lives on to record the end.
    """
    writer = CappedWriter(out, limit)
    read_end, write_end = os.pipe()
    # The descriptors envhub passed (the sandbox's instructions) go on to ``argv``, nothing else.
    child = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=write_end, stderr=write_end, pass_fds=pass_fds
    )
    os.close(write_end)
    signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGTERM))
    with os.fdopen(read_end, "rb", buffering=0) as pipe:
        while block := pipe.read(CHUNK):
            writer.write(block)
    code = child.wait()
    writer.close()
    code = 128 - code if code < 0 else code  # killed by a signal: as a shell reports it
    with open(status + ".tmp", "w") as handle:
        handle.write(f"{code}\n")
    os.replace(status + ".tmp", status)
    return 0


if __name__ == "__main__":
    _, command, out_path, status_path, size, fds, separator, *rest = sys.argv
    if command != "run" or separator != "--" or not rest:
        sys.exit("usage: output_cap.py run OUT STATUS LIMIT FD,FD... -- argv...")
    sys.exit(run(out_path, status_path, int(size), rest, tuple(int(fd) for fd in fds.split(",") if fd)))
