"""The object-store port: files envhub keeps outside any one process's disk.

An S3-compatible bucket (``integrations/s3.py``) that every web replica and
worker reaches alike: finished terminal recordings today, database backups
and per-environment buckets later (issue 13). Keys are ``/``-separated paths
inside the operator's bucket (``recordings/<environment>/<day>/<session>.cast``).

Every method blocks (network I/O): call it from a thread, never on an event
loop. Errors are envhub's: ``ObjectStoreUnavailable`` (retryable: no answer,
a timeout, a 5xx), ``ObjectStoreError`` (refused: a missing bucket, a key
without the permission), ``NotFound`` for an object that is not there.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol


class ObjectStore(Protocol):
    def location(self, key: str) -> str:
        """Where ``key`` lives, as a URL for people and the audit trail (``s3://bucket/key``); no I/O."""

    def upload(self, key: str, path: Path) -> int:
        """Store the file at ``path`` under ``key`` (replacing any object there); its size in bytes.

        Returns only once the store holds the whole file (its size read back
        from the store matches), so the caller may then delete ``path``.
        """

    def size(self, key: str) -> int | None:
        """The object's size in bytes; None when there is no object under ``key``."""

    def read(self, key: str, chunk_bytes: int = 256 * 1024) -> Iterator[bytes]:
        """The object's bytes, streamed; raises ``NotFound`` (before yielding) when it is missing."""

    def delete(self, key: str) -> None:
        """Remove the object; returns quietly when it is already gone."""
