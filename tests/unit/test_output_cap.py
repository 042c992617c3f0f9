"""The capped output file of a local background process (``runtime/local/output_cap.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

from envhub.runtime.local import output_cap
from envhub.runtime.local.output_cap import CHUNK, CappedWriter


def test_the_head_is_dropped_past_the_limit_and_offsets_keep_their_meaning(tmp_path: Path) -> None:
    path = str(tmp_path / "out.log")
    output_cap.create(path)
    limit = 2 * CHUNK
    writer = CappedWriter(path, limit)
    printed = b"".join(b"%07d\n" % n for n in range(100_000))  # 800,000 bytes, 8 per line
    for start in range(0, len(printed), 5000):
        writer.write(printed[start : start + 5000])
    writer.close()

    kept = output_cap.read(path, 0, 32)
    assert kept.size == len(printed)
    assert len(printed) - limit <= kept.dropped <= len(printed) - limit // 2
    assert (kept.offset, kept.data) == (kept.dropped, printed[kept.dropped : kept.dropped + 32])
    middle = output_cap.read(path, 799_992, 100)
    assert (middle.offset, middle.data) == (799_992, b"0099999\n")
    assert output_cap.read(path, len(printed), 10).data == b""
    assert Path(path).stat().st_size <= limit + output_cap.HEADER


def test_below_the_limit_nothing_is_dropped_and_a_missing_file_reads_empty(tmp_path: Path) -> None:
    path = str(tmp_path / "out.log")
    output_cap.create(path)
    writer = CappedWriter(path, 1 << 20)
    writer.write(b"hello\n")
    writer.close()
    assert output_cap.read(path, 2, 100) == output_cap.Kept(b"llo\n", 2, 6, 0)
    assert output_cap.read(str(tmp_path / "none.log"), 0, 10) == output_cap.Kept(b"", 0, 0, 0)


def test_run_caps_a_command_and_records_how_it_ended(tmp_path: Path) -> None:
    out, status = str(tmp_path / "p.log"), str(tmp_path / "p.exit")
    output_cap.create(out)
    script = "import sys; sys.stdout.write('x' * 500000); sys.stderr.write('bye'); sys.exit(3)"
    output_cap.run(out, status, 2 * CHUNK, [sys.executable, "-c", script])
    assert Path(status).read_text() == "3\n"
    kept = output_cap.read(out, 0, 1 << 20)
    assert kept.size == 500_003
    assert kept.dropped > 0
    assert kept.data.endswith(b"xbye")
    assert set(kept.data[:-3]) == {ord("x")}
