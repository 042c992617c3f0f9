"""A server-side terminal emulator (pyte) and its screen as ANSI.

Reattaching a browser must show the screen as it is, not replay raw bytes. We
feed output into pyte and serialize its state back to an escape sequence
stream that makes a fresh xterm look the same: scrollback lines, every cell
with its colours and attributes, the alternate screen (pyte lacks it; full-
screen programs use it), scroll region, the modes programs switch on (cursor
keys, mouse, bracketed paste, cursor visibility), the title, and the cursor.

pyte is pure Python (about 0.2 MB/s here), so it only ever runs on demand, in
a worker thread, over a bounded amount of output (see ``screenlog.py``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import pyte
from pyte import graphics, modes
from pyte.screens import Char, Cursor, StaticDefaultDict

HISTORY_LINES = 200
_ALT_MODES = {1049 << 5, 1047 << 5, 47 << 5}
# Private modes a program may have switched that the browser's xterm must know about.
_REPLAYED_MODES = (1, 1000, 1002, 1003, 1005, 1006, 1015, 2004)
_FG = {name: code for code, name in graphics.FG_ANSI.items() if name != "default"}
_FG.update({name: code for code, name in graphics.FG_AIXTERM.items()})
_BG = {name: code for code, name in graphics.BG_ANSI.items() if name != "default"}
_BG.update({name: code for code, name in graphics.BG_AIXTERM.items()})
_PALETTE: dict[str, int] = {}
for _index, _hex in enumerate(graphics.FG_BG_256):
    _PALETTE.setdefault(_hex, _index)


def _switches_screen(codes: tuple[int, ...]) -> bool:
    return any(code << 5 in _ALT_MODES for code in codes)


class Screen(pyte.HistoryScreen):
    """pyte's history screen plus the alternate screen buffer (modes 1049/1047/47)."""

    def __init__(self, columns: int, lines: int) -> None:
        super().__init__(columns, lines, history=HISTORY_LINES, ratio=0.5)
        self.alternate: tuple[Any, Cursor] | None = None  # the main screen while the alternate shows

    def set_mode(self, *codes: int, **kwargs: Any) -> None:
        if kwargs.get("private") and _switches_screen(codes) and self.alternate is None:
            saved = Cursor(self.cursor.x, self.cursor.y, self.cursor.attrs)
            self.alternate = (self.buffer, saved)
            self.buffer = defaultdict(lambda: StaticDefaultDict(self.default_char))
        super().set_mode(*codes, **kwargs)

    def reset_mode(self, *codes: int, **kwargs: Any) -> None:
        if kwargs.get("private") and _switches_screen(codes) and self.alternate:
            self.buffer, saved = self.alternate
            self.alternate = None
            self.cursor.x, self.cursor.y, self.cursor.attrs = saved.x, saved.y, saved.attrs
            self.dirty.update(range(self.lines))
        super().reset_mode(*codes, **kwargs)

    def index(self) -> None:
        # Lines scrolled off the alternate screen are not history (as in xterm).
        if self.alternate is not None:
            pyte.Screen.index(self)
        else:
            super().index()


def new_screen(columns: int, lines: int) -> tuple[Screen, pyte.ByteStream]:
    screen = Screen(columns, lines)
    return screen, pyte.ByteStream(screen)


def discard(screen: Screen) -> None:
    """Free the screen's cells now.

    A pyte screen is a reference cycle (its buffer's default factory refers
    back to it), so dropping it leaves every cell of the screen and its
    history to the cycle collector, which may come much later: some 60 KiB a
    session after each restore, until then.
    """
    screen.buffer.clear()
    screen.history.top.clear()
    screen.history.bottom.clear()
    screen.alternate = None


def _sgr(char: Char) -> str:
    codes = ["0"]
    for flag, code in (
        (char.bold, "1"),
        (char.italics, "3"),
        (char.underscore, "4"),
        (char.blink, "5"),
        (char.reverse, "7"),
        (char.strikethrough, "9"),
    ):
        if flag:
            codes.append(code)
    for color, table, extended in ((char.fg, _FG, "38"), (char.bg, _BG, "48")):
        if color == "default":
            continue
        if color in table:
            codes.append(str(table[color]))
        elif color in _PALETTE:
            codes.append(f"{extended};5;{_PALETTE[color]}")
        elif len(color) == 6:
            try:
                r, g, b = (int(color[i : i + 2], 16) for i in (0, 2, 4))
            except ValueError:
                continue
            codes.append(f"{extended};2;{r};{g};{b}")
    return "\x1b[" + ";".join(codes) + "m"


def _line(cells: Any, columns: int, default: Char) -> str:
    """One line as text with SGR changes, trailing default blanks trimmed."""
    last = -1
    for x in range(columns - 1, -1, -1):
        if cells[x] != default:
            last = x
            break
    out: list[str] = []
    attrs: tuple[Any, ...] = default[1:]
    for x in range(last + 1):
        char = cells[x]
        if char.data == "":  # the right half of a wide character
            continue
        if char[1:] != attrs:
            out.append(_sgr(char))
            attrs = char[1:]
        out.append(char.data)
    if attrs != default[1:]:
        out.append("\x1b[0m")
    return "".join(out)


def _paint(screen: Screen, buffer: Any) -> Iterable[str]:
    for y in range(screen.lines):
        if y in buffer:
            text = _line(buffer[y], screen.columns, screen.default_char)
            if text:
                yield f"\x1b[{y + 1};1H{text}"


def render(screen: Screen) -> bytes:
    """Escape sequences that make a freshly reset xterm show ``screen``."""
    parts: list[str] = []
    history = list(screen.history.top)
    if history:
        for cells in history:
            parts.append(_line(cells, screen.columns, screen.default_char) + "\r\n")
        # Scroll the history out of view; the screen is painted at fixed rows next.
        parts.append("\r\n" * (screen.lines - 1) + "\x1b[H")
    main = screen.alternate[0] if screen.alternate else screen.buffer
    parts.extend(_paint(screen, main))
    if screen.alternate:
        saved = screen.alternate[1]
        parts.append(f"\x1b[{saved.y + 1};{saved.x + 1}H\x1b[?1049h\x1b[H\x1b[2J")
        parts.extend(_paint(screen, screen.buffer))
    for code in _REPLAYED_MODES:
        if code << 5 in screen.mode:
            parts.append(f"\x1b[?{code}h")
    if modes.DECAWM not in screen.mode:
        parts.append("\x1b[?7l")
    if screen.title:
        parts.append(f"\x1b]2;{screen.title}\x07")
    margins = screen.margins
    if margins is not None and (margins.top, margins.bottom) != (0, screen.lines - 1):
        parts.append(f"\x1b[{margins.top + 1};{margins.bottom + 1}r")
    parts.append(f"\x1b[{screen.cursor.y + 1};{screen.cursor.x + 1}H")
    parts.append(_sgr(screen.cursor.attrs))
    parts.append("\x1b[?25l" if screen.cursor.hidden else "\x1b[?25h")
    return "".join(parts).encode("utf-8", "replace")
