"""Session recordings in asciicast v2 (https://docs.asciinema.org/manual/asciicast/v2/).

One JSON header line, then one ``[seconds, code, data]`` line per event: ``"o"``
output, ``"r"`` resize (``"COLSxROWS"``), ``"m"`` marker. Keystrokes are not
recorded (they would include passwords typed at prompts that do not echo).

Output arriving within :data:`COALESCE_SECONDS` becomes one event: a flood
then costs one JSON encoding per 64 KiB instead of one per read, and no
player can show the difference. Output events are written by
:func:`json_string`, which escapes with a few C-speed byte replacements
instead of ``json.dumps``'s per-character loop (a sixth of the server's CPU in
a flood), and output that is plain ASCII skips the UTF-8 decoder. A recording
stops at a size limit with a marker saying so, so one ``yes`` cannot fill the
disk.
"""

from __future__ import annotations

import codecs
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from envhub.private_files import open_private, private_dir

COALESCE_SECONDS = 0.02
# An event holds at most this much output. Every buffer a flush makes then
# stays below glibc's 128 KiB mmap threshold: bigger ones are mapped, faulted
# in and unmapped on every flush, which doubled the cost of recording.
_FLUSH_BYTES = 64 * 1024
# What JSON requires escaped in a string, besides ``"`` and ``\``: every control
# character, with the short forms ``json.dumps`` uses.
_CONTROL_ESCAPES = tuple(
    (bytes([code]), {8: b"\\b", 9: b"\\t", 10: b"\\n", 12: b"\\f", 13: b"\\r"}.get(code, b"\\u%04x" % code))
    for code in range(32)
)


def json_string(raw: bytes) -> bytes:
    """``raw`` (valid UTF-8) as a JSON string, byte for byte what ``json.dumps(ensure_ascii=False)`` writes.

    Each replacement is one C-speed pass (a miss costs a ``memchr``), so
    terminal output costs a fraction of a millisecond per MB instead of two.
    (Single bytes only: replacing a two-byte needle such as CR LF is ten
    times slower than two single-byte passes.)
    """
    if b"\\" in raw:
        raw = raw.replace(b"\\", b"\\\\")
    if b'"' in raw:
        raw = raw.replace(b'"', b'\\"')
    for char, escaped in _CONTROL_ESCAPES:
        if char in raw:
            raw = raw.replace(char, escaped)
    return b'"' + raw + b'"'


def recording_key(environment_id: int, session_id: str, started: float) -> str:
    """Where a recording lives, relative to the data folder."""
    day = time.strftime("%Y-%m-%d", time.gmtime(started))
    return f"recordings/{environment_id}/{day}/{session_id}.cast"


class Recorder:
    def __init__(
        self,
        path: Path,
        *,
        cols: int,
        rows: int,
        limit_bytes: int,
        title: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self._clock = clock
        self._start = clock()
        self._limit = limit_bytes
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._pending_at = 0.0
        self.written = 0
        self.truncated = False
        private_dir(path.parent)
        self._file: IO[bytes] | None = open_private(path, "wb", buffering=16 * 1024)
        header: dict[str, Any] = {
            "version": 2,
            "width": cols,
            "height": rows,
            "timestamp": int(time.time()),
            "env": {"TERM": "xterm-256color"},
        }
        if title:
            header["title"] = title
        self._line(header)

    def _elapsed(self, at: float | None = None) -> float:
        return round((self._clock() if at is None else at) - self._start, 6)

    def _line(self, value: Any) -> None:
        self._write(json.dumps(value, ensure_ascii=False, separators=(", ", ": ")).encode() + b"\n")

    def _write(self, line: bytes) -> None:
        if self._file is None:
            return
        self._file.write(line)
        self.written += len(line)

    def output(self, data: bytes) -> None:
        if self._file is None or self.truncated:
            return
        now = self._clock()
        late = now - self._pending_at > COALESCE_SECONDS
        if self._pending and (late or self._pending_size + len(data) > _FLUSH_BYTES):
            self.flush()
            if self._stopped():
                return
        if not self._pending:
            self._pending_at = now
        self._pending.append(data)
        self._pending_size += len(data)

    def _stopped(self) -> bool:
        return self.truncated or self._file is None

    def flush(self) -> None:
        if not self._pending:
            return
        data, at = b"".join(self._pending), self._pending_at
        self._pending, self._pending_size = [], 0
        if not data.isascii() or self._decoder.getstate()[0]:
            # Replaces invalid UTF-8 and holds back a character split across reads.
            data = self._decoder.decode(data).encode()
        if data:
            self._write(b'[%r, "o", %s]\n' % (self._elapsed(at), json_string(data)))
        if self.written > self._limit and not self.truncated:
            self.truncated = True
            limit_mb = self._limit / 1e6
            self._line([self._elapsed(), "m", f"recording stopped at its {limit_mb:g} MB limit"])

    def resize(self, cols: int, rows: int) -> None:
        self.flush()
        if not self.truncated:
            self._line([self._elapsed(), "r", f"{cols}x{rows}"])

    def marker(self, label: str) -> None:
        self.flush()
        self._line([self._elapsed(), "m", label])

    def close(self) -> None:
        if self._file is None:
            return
        self.flush()
        tail = self._decoder.decode(b"", final=True)
        if tail and not self.truncated:
            self._line([self._elapsed(), "o", tail])
        self._file.close()
        self._file = None
