"""What a session's screen looks like, in bounded memory and almost no CPU.

A session keeps a *checkpoint* (its screen, rendered to escape sequences by
``emulator.render``) plus the raw output since. Restoring a screen replays
checkpoint + tail into pyte in a worker thread and renders the result, which
becomes the new checkpoint. Output itself only appends to the tail, so the hot
path never touches the (slow) emulator.

Memory stays bounded whatever a session prints: past ``limit`` bytes the tail
keeps only its last ``keep`` bytes. That is exact for what matters on screen
after a flood (the last ``keep`` bytes hold more than a screenful), and the
sequences that change modes rather than cells (alternate screen, cursor keys,
mouse, scroll region, colours, title) found in the dropped part are carried
over, last one per kind, so ``vim`` entered long ago still shows as ``vim``.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

from envhub.api.terminal import emulator

# Sequences that change modes rather than cells, other than colours. Rare, so
# scanning for them costs one C-speed pass over what is dropped.
_STATEFUL = re.compile(
    rb"\x1b(?:"
    rb"\[\?[0-9;]*[hl]"  # private modes: alternate screen, cursor keys, mouse...
    rb"|\[[0-9;]*r"  # scroll region
    rb"|\][012];[^\x07\x1b]{0,512}(?:\x07|\x1b\\)"  # title
    rb"|[()][0AB]"  # character sets (line drawing)
    rb")"
)
# Colours and attributes (SGR) are everywhere in coloured output, and only the
# last one counts: it is found by searching the dropped part backwards.
_SGR_REVERSED = re.compile(rb"m[0-9;:]*\[\x1b")
_MAX_CARRIED = 48
_FLOOD_SCROLLBACK = 100


def _kind(sequence: bytes) -> bytes:
    """Sequences of one kind overwrite each other; only the last one matters."""
    if sequence.startswith(b"\x1b[?"):
        return b"mode" + sequence[3:-1]
    if sequence.endswith(b"m") and sequence.startswith(b"\x1b["):
        return b"sgr"
    if sequence.endswith(b"r"):
        return b"margins"
    if sequence.startswith(b"\x1b]"):
        return b"title"
    return sequence[:2]


@dataclass(frozen=True, slots=True)
class Frozen:
    """Everything needed to rebuild the screen up to one point of the stream."""

    checkpoint: bytes
    checkpoint_size: tuple[int, int]
    start_size: tuple[int, int]
    carried: bytes
    tail: bytes
    resizes: tuple[tuple[int, int, int], ...]  # (offset into tail, cols, rows)

    def render(self) -> bytes:
        """Replay into a fresh emulator and serialize it (CPU-bound: run in a thread)."""
        screen, stream = emulator.new_screen(*self.checkpoint_size)
        try:
            stream.feed(self.checkpoint)
            if self.start_size != self.checkpoint_size:
                screen.resize(self.start_size[1], self.start_size[0])
            stream.feed(self.carried)
            position = 0
            for offset, cols, rows in self.resizes:
                stream.feed(self.tail[position:offset])
                screen.resize(rows, cols)
                position = offset
            stream.feed(self.tail[position:])
            return emulator.render(screen)
        finally:
            emulator.discard(screen)


class ScreenLog:
    def __init__(self, cols: int, rows: int, *, keep: int = 32 * 1024, limit: int = 96 * 1024) -> None:
        if keep >= limit:
            raise ValueError("keep must be smaller than limit")
        self.keep, self.limit = keep, limit
        self.size = (cols, rows)
        self._checkpoint = b""
        self._checkpoint_size = self.size
        self._start_size = self.size
        self._carried: dict[bytes, bytes] = {}
        self._tail = bytearray()
        self._resizes: list[tuple[int, int, int]] = []
        self.dropped = 0  # bytes never replayed (a flood's middle), for tests and metrics

    @property
    def pending(self) -> int:
        """Output not folded into the checkpoint yet."""
        return len(self._tail)

    @property
    def memory(self) -> int:
        return len(self._checkpoint) + len(self._tail) + sum(map(len, self._carried.values()))

    def write(self, data: bytes) -> None:
        self._tail += data
        if len(self._tail) > self.limit:
            self._drop_middle()

    def resize(self, cols: int, rows: int) -> None:
        if (cols, rows) != self.size:
            self.size = (cols, rows)
            self._resizes.append((len(self._tail), cols, rows))

    def _visible_start(self, start: int) -> int:
        """Where the last screenful of lines (plus some scrollback) begins, if after ``start``.

        Line-dense output (``yes``, a log) scrolls everything before that out
        of reach, and replaying fewer lines keeps restores fast.
        """
        position = len(self._tail)
        for _ in range(self.size[1] + _FLOOD_SCROLLBACK):
            position = self._tail.rfind(b"\n", start, position)
            if position < 0:
                return start
        return position + 1

    def _drop_middle(self, cut: int | None = None) -> None:
        cut = self._visible_start(len(self._tail) - self.keep if cut is None else cut)
        # Cut after a line end when one is near, so no sequence is split in two.
        newline = self._tail.find(b"\n", max(0, cut - 1), cut + 2048)
        if newline >= 0:
            cut = newline + 1
        if cut <= 0:
            return
        if self._tail.find(b"\x1b", 0, cut) >= 0:
            self._carry(cut)
        while len(self._carried) > _MAX_CARRIED:
            self._carried.pop(next(iter(self._carried)))
        kept: list[tuple[int, int, int]] = []
        for offset, cols, rows in self._resizes:
            if offset <= cut:
                self._start_size = (cols, rows)
            else:
                kept.append((offset - cut, cols, rows))
        self._resizes = kept
        del self._tail[:cut]
        self.dropped += cut

    def _carry(self, cut: int) -> None:
        """Remember the last sequence of each stateful kind before ``cut``, in stream order."""
        dropped = memoryview(self._tail)[:cut]
        found = [(m.start(), m.group()) for m in _STATEFUL.finditer(dropped)]
        dropped.release()
        last_sgr = _SGR_REVERSED.search(self._tail[cut - 1 :: -1])
        if last_sgr is not None:
            at = cut - last_sgr.end()
            found.insert(bisect.bisect(found, at, key=lambda item: item[0]), (at, last_sgr.group()[::-1]))
        for _, sequence in found:
            self._carried.pop(_kind(sequence), None)
            self._carried[_kind(sequence)] = sequence

    def freeze(self) -> Frozen:
        """The state so far; writes after this go on into a fresh tail."""
        if self._visible_start(0) > 0:
            self._drop_middle(0)
        frozen = Frozen(
            checkpoint=self._checkpoint,
            checkpoint_size=self._checkpoint_size,
            start_size=self._start_size,
            carried=b"".join(self._carried.values()),
            tail=bytes(self._tail),
            resizes=tuple(self._resizes),
        )
        self._carried.clear()
        self._tail = bytearray()
        self._resizes = []
        self._start_size = self.size
        self._checkpoint_size = self.size
        return frozen

    def settle(self, rendered: bytes) -> None:
        """Install the render of the last :meth:`freeze` as the new checkpoint."""
        self._checkpoint = rendered
