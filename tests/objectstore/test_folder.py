"""The object-store port on a folder (the embedded default's backups): private, whole, and only inside."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from envhub.errors import NotFound, ObjectStoreError
from envhub.integrations.folder_store import FolderObjectStore


def test_an_object_is_stored_privately_read_back_and_deleted(tmp_path: Path) -> None:
    store = FolderObjectStore(tmp_path / "backups")
    source = tmp_path / "dump"
    source.write_bytes(b"x" * 300_000)
    assert store.upload("backups/1/2/db/3.dump", source) == 300_000
    stored = tmp_path / "backups" / "backups" / "1" / "2" / "db" / "3.dump"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert stat.S_IMODE(stored.parent.stat().st_mode) == 0o700
    assert [p.name for p in stored.parent.iterdir()] == ["3.dump"]  # no partial file left
    assert store.size("backups/1/2/db/3.dump") == 300_000
    assert b"".join(store.read("backups/1/2/db/3.dump", chunk_bytes=65536)) == source.read_bytes()
    assert store.location("backups/1/2/db/3.dump") == stored.as_uri()
    store.delete("backups/1/2/db/3.dump")
    store.delete("backups/1/2/db/3.dump")  # quiet when gone
    assert store.size("backups/1/2/db/3.dump") is None
    with pytest.raises(NotFound):
        store.read("backups/1/2/db/3.dump")


@pytest.mark.parametrize("key", ["../escape", "/etc/passwd", "a/../../b", "", "a//b"])
def test_a_key_never_reaches_outside_the_folder(tmp_path: Path, key: str) -> None:
    store = FolderObjectStore(tmp_path / "backups")
    source = tmp_path / "dump"
    source.write_bytes(b"x")
    with pytest.raises(ObjectStoreError):
        store.upload(key, source)
