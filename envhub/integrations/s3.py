"""The object-store port on an S3-compatible endpoint, through boto3: the one module that imports it.

AWS S3 itself when no endpoint URL is given; otherwise any S3-compatible
server (MinIO, Cloudflare R2, Ceph, moto in the tests), addressed by path
(``<endpoint>/<bucket>/<key>``), which they all serve. Checksums are sent
and checked only where S3 requires them: stores that predate S3's default
CRC32 headers refuse them.

botocore retries throttling, 5xx and dropped connections itself (its
"standard" mode, three attempts) before an error reaches envhub, then
errors become envhub's, raised ``from`` botocore's: ``object_store_unavailable``
(no connection, timeouts, 5xx, throttling; retryable), ``not_found`` for a
missing object, ``object_store_error`` for anything else the store refused.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import boto3.exceptions
import botocore.exceptions
from botocore.config import Config

from envhub.errors import NotFound, ObjectStoreError, ObjectStoreUnavailable

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_UNAVAILABLE_CODES = {"SlowDown", "ServiceUnavailable", "RequestTimeout", "InternalError", "Throttling"}
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
    if isinstance(exc, boto3.exceptions.S3UploadFailedError):
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, Exception) and cause is not exc:
            return _error(cause, what)
        return ObjectStoreUnavailable(f"{what}: {exc}")
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        message = str(error.get("Message") or code or status)
        if code in _MISSING_CODES:
            return NotFound(f"{what}: no such object")
        if status >= 500 or code in _UNAVAILABLE_CODES:
            return ObjectStoreUnavailable(f"{what}: the object store answered {status} {message}")
        return ObjectStoreError(f"{what}: the object store refused it ({code}: {message})")
    return ObjectStoreUnavailable(f"{what}: {exc}")


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
                config = Config(
                    connect_timeout=access.connect_timeout,
                    read_timeout=access.read_timeout,
                    retries={"mode": "standard", "max_attempts": 3},
                    signature_version="s3v4",
                    s3={"addressing_style": "path" if access.endpoint_url else "auto"},
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                )
                session = boto3.session.Session()
                self._client = session.client(
                    "s3",
                    endpoint_url=access.endpoint_url or None,
                    region_name=access.region,
                    aws_access_key_id=access.access_key_id or None,
                    aws_secret_access_key=access.secret_access_key or None,
                    config=config,
                )
            return self._client

    def location(self, key: str) -> str:
        return f"s3://{self.access.bucket}/{key}"

    def upload(self, key: str, path: Path) -> int:
        what = f"uploading {self.location(key)}"
        expected = path.stat().st_size
        try:
            self._s3().upload_file(str(path), self.access.bucket, key)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise _error(exc, what) from exc
        except boto3.exceptions.S3UploadFailedError as exc:
            raise _error(exc, what) from exc
        stored = self.size(key)
        if stored != expected:
            raise ObjectStoreUnavailable(f"{what}: the store holds {stored} bytes of {expected}")
        return expected

    def size(self, key: str) -> int | None:
        try:
            head = self._s3().head_object(Bucket=self.access.bucket, Key=key)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            error = _error(exc, f"reading {self.location(key)}")
            if isinstance(error, NotFound):
                return None
            raise error from exc
        return int(head["ContentLength"])

    def read(self, key: str, chunk_bytes: int = 256 * 1024) -> Iterator[bytes]:
        what = f"reading {self.location(key)}"
        try:
            body = self._s3().get_object(Bucket=self.access.bucket, Key=key)["Body"]
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise _error(exc, what) from exc

        def chunks() -> Iterator[bytes]:
            try:
                yield from body.iter_chunks(chunk_bytes)
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
                raise _error(exc, what) from exc
            finally:
                body.close()

        return chunks()

    def delete(self, key: str) -> None:
        try:
            self._s3().delete_object(Bucket=self.access.bucket, Key=key)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            error = _error(exc, f"deleting {self.location(key)}")
            if not isinstance(error, NotFound):
                raise error from exc
