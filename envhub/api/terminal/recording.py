"""Session recordings in asciicast v2 (https://docs.asciinema.org/manual/asciicast/v2/).

One JSON header line, then one ``[seconds, code, data]`` line per event: ``"o"``
output, ``"r"`` resize (``"COLSxROWS"``), ``"m"`` marker. Keystrokes are not
recorded (they would include passwords typed at prompts that do not echo).

Output arriving within :data:`COALESCE_SECONDS` becomes one event: a flood
then costs one JSON encoding per few hundred KiB instead of one per read, and
no player can show the difference. A recording stops at a size limit with a
marker saying so, so one ``yes`` cannot fill the disk.
"""

from __future__ import annotations

import codecs
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

COALESCE_SECONDS = 0.02
_FLUSH_BYTES = 256 * 1024


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
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] | None = path.open("w", encoding="utf-8", buffering=64 * 1024)
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
        if self._file is None:
            return
        text = json.dumps(value, ensure_ascii=False, separators=(", ", ": ")) + "\n"
        self._file.write(text)
        self.written += len(text)

    def output(self, data: bytes) -> None:
        if self._file is None or self.truncated:
            return
        now = self._clock()
        if self._pending and (now - self._pending_at > COALESCE_SECONDS or self._pending_size > _FLUSH_BYTES):
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
        text = self._decoder.decode(data)
        if text:
            self._line([self._elapsed(at), "o", text])
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
