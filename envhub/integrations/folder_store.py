"""The object-store port on a local folder: where the embedded default keeps database backups.

One envhub process on one machine (``make run``) has no S3 bucket; its
backups go to ``<data folder>/backups`` through the same port, so the backup
and restore code is the same on a laptop and on a cluster. Files are private
(0600 in 0700 folders) and written to a temporary name first, then renamed:
a reader never sees half an object. Not for several machines: use an
S3-compatible store there (``ENVHUB_OBJECT_STORE_*``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from envhub.errors import NotFound, ObjectStoreError
from envhub.private_files import open_private, private_dir


class FolderObjectStore:
    """:class:`~envhub.integrations.object_store.ObjectStore` under one folder; keys are relative paths."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if any(part in ("", ".", "..") for part in parts):
            raise ObjectStoreError(f"{key!r} is not a key of this store")
        return self.root.joinpath(*parts)

    def location(self, key: str) -> str:
        return self._path(key).as_uri()

    def upload(self, key: str, path: Path) -> int:
        target = self._path(key)
        private_dir(target.parent)
        partial = target.with_name(f".{target.name}.partial")
        try:
            with path.open("rb") as source, open_private(partial, "wb") as out:
                shutil.copyfileobj(source, out, 1024 * 1024)
                out.flush()
                os.fsync(out.fileno())
            os.replace(partial, target)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise ObjectStoreError(f"storing {self.location(key)}: {exc.strerror or exc}") from exc
        return target.stat().st_size

    def size(self, key: str) -> int | None:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            return None

    def read(self, key: str, chunk_bytes: int = 256 * 1024) -> Iterator[bytes]:
        try:
            handle = self._path(key).open("rb")
        except FileNotFoundError:
            raise NotFound(f"reading {self.location(key)}: no such object") from None

        def chunks() -> Iterator[bytes]:
            with handle:
                while chunk := handle.read(chunk_bytes):
                    yield chunk

        return chunks()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)
