"""The object-store port on an S3-compatible endpoint, through boto3.

AWS S3 itself when no endpoint URL is given; otherwise any S3-compatible
server (MinIO, Cloudflare R2, Ceph, moto in the tests). The client and the
reading of botocore's failures are integrations/aws.py's, shared with the
managed services' bucket store.

botocore retries throttling, 5xx and dropped connections itself before an
error reaches envhub, then errors become envhub's, raised ``from`` botocore's:
``object_store_unavailable``
(no connection, timeouts, 5xx, throttling; retryable), ``not_found`` for a
missing object, ``object_store_error`` for anything else the store refused.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from envhub.errors import NotFound, ObjectStoreError, ObjectStoreUnavailable
from envhub.integrations.aws import FAILURES, failure, s3_client

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_MISSING_CODES = {"404", "NoSuchKey", "NotFound"}


@dataclass(frozen=True, slots=True)
class S3Access:
    """Where the bucket is and how to sign in to it (plain values; the secret is never shown)."""

    bucket: str
    endpoint_url: str = ""  # empty: AWS S3's own endpoint for the region
    region: str = "us-east-1"
    access_key_id: str = ""  # empty (with the secret): boto3's default credential chain
    secret_access_key: str = field(default="", repr=False)
    connect_timeout: float = 5.0
    read_timeout: float = 60.0


def _error(exc: Exception, what: str) -> Exception:
    """envhub's error for a botocore (or s3transfer) failure of ``what``."""
    read = failure(exc)
    if read.code in _MISSING_CODES:
        return NotFound(f"{what}: no such object")
    if not read.answered:
        return ObjectStoreUnavailable(f"{what}: {read.message}")
    if read.unavailable:
        return ObjectStoreUnavailable(f"{what}: the object store answered {read.status} {read.message}")
    return ObjectStoreError(f"{what}: the object store refused it ({read.code}: {read.message})")


class S3ObjectStore:
    """:class:`~envhub.integrations.object_store.ObjectStore` on one bucket. Thread-safe."""

    def __init__(self, access: S3Access) -> None:
        self.access = access
        self._client: S3Client | None = None
        self._lock = threading.Lock()

    def _s3(self) -> S3Client:
        # boto3 clients are thread-safe once built; building one is not.
        with self._lock:
            if self._client is None:
                access = self.access
                self._client = s3_client(
                    endpoint_url=access.endpoint_url,
                    region=access.region,
                    access_key_id=access.access_key_id,
                    secret_access_key=access.secret_access_key,
                    connect_timeout=access.connect_timeout,
                    read_timeout=access.read_timeout,
                )
            return self._client

    def location(self, key: str) -> str:
        return f"s3://{self.access.bucket}/{key}"

    def upload(self, key: str, path: Path) -> int:
        what = f"uploading {self.location(key)}"
        expected = path.stat().st_size
        try:
            self._s3().upload_file(str(path), self.access.bucket, key)
        except FAILURES as exc:
            raise _error(exc, what) from exc
        stored = self.size(key)
        if stored != expected:
            raise ObjectStoreUnavailable(f"{what}: the store holds {stored} bytes of {expected}")
        return expected

    def size(self, key: str) -> int | None:
        try:
            head = self._s3().head_object(Bucket=self.access.bucket, Key=key)
        except FAILURES as exc:
            error = _error(exc, f"reading {self.location(key)}")
            if isinstance(error, NotFound):
                return None
            raise error from exc
        return int(head["ContentLength"])

    def read(self, key: str, chunk_bytes: int = 256 * 1024) -> Iterator[bytes]:
        what = f"reading {self.location(key)}"
        try:
            body = self._s3().get_object(Bucket=self.access.bucket, Key=key)["Body"]
        except FAILURES as exc:
            raise _error(exc, what) from exc

        def chunks() -> Iterator[bytes]:
            try:
                yield from body.iter_chunks(chunk_bytes)
            except FAILURES as exc:
                raise _error(exc, what) from exc
            finally:
                body.close()

        return chunks()

    def delete(self, key: str) -> None:
        try:
            self._s3().delete_object(Bucket=self.access.bucket, Key=key)
        except FAILURES as exc:
            error = _error(exc, f"deleting {self.location(key)}")
            if not isinstance(error, NotFound):
                raise error from exc
