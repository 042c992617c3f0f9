"""Screen restore: what a reattaching browser is sent, and that it stays small."""

from __future__ import annotations

import gc
import json
import re
from pathlib import Path

import pytest
from pyte.screens import StaticDefaultDict

from envhub.api.terminal import emulator
from envhub.api.terminal.recording import Recorder, json_string
from envhub.api.terminal.screenlog import ScreenLog


def shown(rendered: bytes, cols: int = 80, rows: int = 24) -> list[str]:
    """What a fresh terminal displays after receiving ``rendered``."""
    screen, stream = emulator.new_screen(cols, rows)
    stream.feed(rendered)
    return [line.rstrip() for line in screen.display]


def test_restore_shows_text_colours_and_cursor() -> None:
    log = ScreenLog(80, 24)
    log.write(b"$ ls\r\n\x1b[1;34mdocs\x1b[0m  README.md\r\n$ ")
    rendered = log.freeze().render()
    assert shown(rendered)[:3] == ["$ ls", "docs  README.md", "$"]
    assert b"\x1b[0;1;34mdocs" in rendered
    assert rendered.endswith(b"\x1b[3;3H\x1b[0m\x1b[?25h")


def test_alternate_screen_keeps_the_shell_underneath() -> None:
    log = ScreenLog(80, 24)
    log.write(b"$ vim notes\r\n")
    log.write(b"\x1b[?1049h\x1b[H\x1b[2J~ editing\x1b[?1h\x1b[?2004h")
    rendered = log.freeze().render()
    assert shown(rendered)[0] == "~ editing"
    assert b"\x1b[?1049h" in rendered
    assert b"\x1b[?1h" in rendered  # cursor keys in application mode, as vim set them
    assert b"\x1b[?2004h" in rendered
    log.settle(rendered)
    log.write(b"\x1b[?1049l$ ")
    assert shown(log.freeze().render())[0] == "$ vim notes"


def test_resizes_are_replayed_where_they_happened() -> None:
    log = ScreenLog(80, 24)
    log.write(b"before\r\n")
    log.resize(40, 10)
    log.write(b"x" * 45)
    rendered = log.freeze().render()
    assert shown(rendered, 40, 10)[1:3] == ["x" * 40, "x" * 5]


def test_a_flood_keeps_memory_bounded_and_the_restore_fast() -> None:
    log = ScreenLog(120, 40)
    log.write(b"\x1b[?2004h")
    for index in range(50_000):
        log.write(b"line %d of a flood\r\n" % index)
    assert log.memory <= log.limit + 4096
    assert log.dropped > 500_000
    rendered = log.freeze().render()
    assert shown(rendered, 120, 40)[-2] == "line 49999 of a flood"
    assert b"\x1b[?2004h" in rendered  # a mode set before the dropped part survives
    # Scrollback is bounded too: at most the emulator's history plus a screen.
    assert rendered.count(b"\r\n") <= emulator.HISTORY_LINES + 40


def test_a_restore_frees_its_cells_at_once_not_at_the_next_collection() -> None:
    log = ScreenLog(120, 40)
    log.write(b"\x1b[1;32mcoloured line\x1b[0m\r\n" * 300)
    frozen = log.freeze()

    def lines() -> int:
        # type(), not isinstance(): a dead weak proxy among the objects raises on isinstance.
        return sum(type(o) is StaticDefaultDict for o in gc.get_objects())

    gc.collect()
    gc.disable()
    try:
        before = lines()
        assert b"coloured line" in frozen.render()
        assert lines() == before
    finally:
        gc.enable()


@pytest.mark.parametrize("size", [(80, 24), (200, 60)])
def test_checkpoint_size_is_bounded_by_the_screen(size: tuple[int, int]) -> None:
    cols, rows = size
    log = ScreenLog(cols, rows)
    for row in range(rows):
        log.write(b"\x1b[%d;1H" % (row + 1) + b"\x1b[38;5;%dm#" % (row % 200) * cols)
    rendered = log.freeze().render()
    log.settle(rendered)
    assert len(rendered) < cols * rows * 16
    assert log.memory == len(rendered)


def test_recording_is_asciicast_v2(tmp_path: Path) -> None:
    now = [100.0]
    recorder = Recorder(tmp_path / "r.cast", cols=80, rows=24, limit_bytes=10_000, clock=lambda: now[0])
    recorder.output(b"hello \xe2\x9c")  # a UTF-8 character split across reads
    now[0] += 0.005
    recorder.output(b"\x94 world\r\n")
    now[0] += 1.0
    recorder.resize(100, 30)
    recorder.output(b"x" * 20_000)
    now[0] += 0.5
    recorder.output(b"after the limit")
    recorder.close()
    lines = (tmp_path / "r.cast").read_text().splitlines()
    header = json.loads(lines[0])
    assert (header["version"], header["width"], header["height"]) == (2, 80, 24)
    events = [json.loads(line) for line in lines[1:]]
    assert events[0] == [0.0, "o", "hello ✔ world\r\n"]  # coalesced, decoded whole
    assert events[1] == [1.005, "r", "100x30"]
    assert events[2][1] == "o"
    assert events[3][1] == "m"
    assert re.search("limit", events[3][2])
    assert all("after the limit" not in str(e) for e in events)


def test_recorded_output_is_escaped_exactly_as_json_dumps_would() -> None:
    samples = [bytes(range(128)), b'say "hi" \\ bye\r\n', "✔ naïve\x1b[0m\x07".encode(), b""]
    samples += [bytes([code]) * 3 + b"x" for code in range(32)]
    for raw in samples:
        text = raw.decode()
        assert json_string(raw) == json.dumps(text, ensure_ascii=False).encode()
        assert json.loads(json_string(raw)) == text
