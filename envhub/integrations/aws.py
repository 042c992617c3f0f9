"""boto3 clients and the reading of their failures, shared by every adapter that talks to AWS-style APIs.

The object store (integrations/s3.py) and the bucket store of the managed
services (integrations/backing/buckets.py) both reach S3-compatible servers,
and the bucket store reaches IAM as well: their clients are configured here,
once, and a botocore failure is read here into what both need to decide on
(did the server answer, is it worth retrying, what did it say), so each
adapter only picks its own envhub error.

The clients address buckets by path when an endpoint URL is given (MinIO,
Ceph, R2 and moto all serve ``<endpoint>/<bucket>/<key>``), send and check
checksums only where S3 requires them (stores that predate S3's default CRC32
headers refuse them), and let botocore retry throttling, 5xx and dropped
connections itself ("standard" mode, three attempts) before a failure reaches
envhub.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import boto3
import boto3.exceptions
import botocore.exceptions
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_s3 import S3Client

# Error codes that mean "the service is busy or failing", whatever the HTTP status says.
_UNAVAILABLE_CODES = {
    "SlowDown",
    "ServiceUnavailable",
    "RequestTimeout",
    "InternalError",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
}

# What every adapter catches around a boto3 call.
FAILURES = (
    botocore.exceptions.BotoCoreError,
    botocore.exceptions.ClientError,
    boto3.exceptions.S3UploadFailedError,
)


@dataclass(frozen=True, slots=True)
class Failure:
    """A boto3 call's failure, read: ``code`` is the service's error code, empty when nothing answered."""

    code: str
    status: int
    message: str

    @property
    def answered(self) -> bool:
        return bool(self.code or self.status)

    @property
    def unavailable(self) -> bool:
        """Worth retrying: no answer, a 5xx, or throttling."""
        return not self.answered or self.status >= 500 or self.code in _UNAVAILABLE_CODES


def failure(exc: Exception) -> Failure:
    """Read a botocore (or s3transfer) exception."""
    if isinstance(exc, boto3.exceptions.S3UploadFailedError):
        # s3transfer wraps the client's error; the cause says what happened.
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, Exception) and cause is not exc:
            return failure(cause)
        return Failure("", 0, str(exc))
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        return Failure(code, status, str(error.get("Message") or code or status))
    return Failure("", 0, str(exc))


def _config(connect_timeout: float, read_timeout: float) -> Config:
    return Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"mode": "standard", "max_attempts": 3},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )


def s3_client(
    *,
    endpoint_url: str,
    region: str,
    access_key_id: str,
    secret_access_key: str,
    connect_timeout: float = 5.0,
    read_timeout: float = 60.0,
) -> S3Client:
    """An S3 client: AWS's own endpoint for the region when ``endpoint_url`` is empty; boto3's default
    credential chain when the key pair is empty."""
    config = _config(connect_timeout, read_timeout).merge(
        Config(signature_version="s3v4", s3={"addressing_style": "path" if endpoint_url else "auto"})
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url or None,
        region_name=region,
        aws_access_key_id=access_key_id or None,
        aws_secret_access_key=secret_access_key or None,
        config=config,
    )


def iam_client(
    *,
    endpoint_url: str,
    region: str,
    access_key_id: str,
    secret_access_key: str,
    connect_timeout: float = 5.0,
    read_timeout: float = 30.0,
) -> IAMClient:
    """An IAM client: AWS's global IAM endpoint when ``endpoint_url`` is empty."""
    config = _config(connect_timeout, read_timeout)
    return boto3.session.Session().client(
        "iam",
        endpoint_url=endpoint_url or None,
        region_name=region,
        aws_access_key_id=access_key_id or None,
        aws_secret_access_key=secret_access_key or None,
        config=config,
    )
