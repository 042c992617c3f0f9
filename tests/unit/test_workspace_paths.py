"""The parts of ``services/files.py`` that run in envhub: path checks and the listing's parsing."""

from __future__ import annotations

import pytest

from envhub.errors import WorkspacePathInvalid
from envhub.services.files import _entries, workspace_path


@pytest.mark.parametrize(
    ("given", "expected"),
    [("a/b.txt", "a/b.txt"), ("./a//b/./c", "a/b/c"), (" src/x ", "src/x"), ("/workspace/a", "/workspace/a")],
)
def test_paths_are_normalized_before_they_reach_the_environment(given: str, expected: str) -> None:
    assert workspace_path(given) == expected


@pytest.mark.parametrize("given", ["../x", "a/../../b", "a/..", "a\x00b", "x" * 4097])
def test_dot_dot_nul_and_overlong_paths_are_refused_before_anything_runs(given: str) -> None:
    with pytest.raises(WorkspacePathInvalid):
        workspace_path(given)


def test_the_workspace_itself_is_a_folder_to_list_not_a_file() -> None:
    assert workspace_path("", allow_root=True) == "."
    with pytest.raises(WorkspacePathInvalid) as refused:
        workspace_path(".")
    assert refused.value.details["reason"] == "is_directory"


def test_listing_records_parse_any_name_and_mark_more_entries() -> None:
    output = b"b\0file 3 0\nline\nbreak\0dir 4096 86400\nodd\xff\0fifo 0 x\n\0"
    entries, truncated = _entries(output)
    assert truncated is True
    assert [(e["name"], e["type"], e["size"]) for e in entries] == [
        ("b", "file", 3),
        ("line\nbreak", "dir", 4096),
        ("odd\ufffd", "other", 0),
    ]
    assert entries[1]["modified"] == "1970-01-02T00:00:00+00:00"
    assert _entries(b"") == ([], False)
