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

An S3 client can also reach a server that listens on a UNIX socket (the
embedded buckets, integrations/backing/embedded_buckets.py): botocore only
dials TCP, so a ``before-send`` handler, botocore's documented way to answer a
request in its place, sends the signed request over the socket with urllib3
(botocore's own HTTP library) and hands back the response as botocore's
sender would. Requests stay signed for the endpoint URL, which is what the
server's other clients use too.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import boto3
import boto3.exceptions
import botocore.exceptions
import urllib3
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.config import Config
from urllib3.connection import HTTPConnection

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


def _config(connect_timeout: float, read_timeout: float, max_attempts: int = 3) -> Config:
    return Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"mode": "standard", "max_attempts": max_attempts},
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
    max_attempts: int = 3,
    unix_socket: str = "",
) -> S3Client:
    """An S3 client: AWS's own endpoint for the region when ``endpoint_url`` is empty; boto3's default
    credential chain when the key pair is empty. With ``unix_socket``, every request goes to the
    server on that socket, signed for ``endpoint_url`` (see the module docstring)."""
    config = _config(connect_timeout, read_timeout, max_attempts).merge(
        Config(signature_version="s3v4", s3={"addressing_style": "path" if endpoint_url else "auto"})
    )
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url or None,
        region_name=region,
        aws_access_key_id=access_key_id or None,
        aws_secret_access_key=secret_access_key or None,
        config=config,
    )
    if unix_socket:
        if not endpoint_url:
            raise ValueError("a client on a UNIX socket needs the endpoint URL its requests are signed for")
        sender = _SocketSender(unix_socket, connect_timeout=connect_timeout, read_timeout=read_timeout)
        # The stubs type handlers as returning None; before-send's may answer (botocore's docs).
        client.meta.events.register("before-send.s3", sender)  # type: ignore[arg-type]
    return client


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


class _SocketConnection(HTTPConnection):
    """urllib3's HTTP connection, dialled to a UNIX socket instead of a host and port."""

    def __init__(self, *args: Any, socket_path: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout if isinstance(self.timeout, (int, float)) else None)
            sock.connect(self.socket_path)
        except OSError as exc:
            sock.close()
            raise urllib3.exceptions.NewConnectionError(
                self, f"cannot connect to {self.socket_path}: {exc.strerror or exc}"
            ) from exc
        self.sock = sock


class _SocketPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _SocketConnection


class _SocketSender:
    """A ``before-send`` handler: the request, as signed, over the UNIX socket; botocore's own errors."""

    def __init__(self, path: str, *, connect_timeout: float, read_timeout: float) -> None:
        self.path = path
        self.pool = _SocketPool(
            "localhost",
            socket_path=path,
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
            maxsize=10,
            block=False,
        )

    def __call__(self, request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        url = urlsplit(request.url)
        target = (url.path or "/") + (f"?{url.query}" if url.query else "")
        headers = dict(request.headers.items())
        # The signature covers the endpoint's host; urllib3 would otherwise send "localhost".
        if not any(name.lower() == "host" for name in headers):
            headers["Host"] = url.netloc
        chunked = str(headers.get("Transfer-Encoding", "")).lower() == "chunked"
        body = bytes(request.body) if isinstance(request.body, bytearray) else request.body
        try:
            raw = self.pool.urlopen(
                method=request.method,
                url=target,
                body=body,
                headers=headers,
                retries=urllib3.Retry(False),
                assert_same_host=False,
                preload_content=False,
                decode_content=False,
                chunked=chunked,
                enforce_content_length=False,
            )
            # As botocore's own sender does: urllib3's headers, which AWSResponse copies.
            response = AWSResponse(request.url, raw.status, raw.headers, raw)  # type: ignore[arg-type]
            if not request.stream_output:
                response.content  # noqa: B018 - read it all now, as botocore's sender does
        except urllib3.exceptions.NewConnectionError as exc:
            raise botocore.exceptions.EndpointConnectionError(endpoint_url=request.url, error=exc) from exc
        except urllib3.exceptions.ReadTimeoutError as exc:
            raise botocore.exceptions.ReadTimeoutError(endpoint_url=request.url, error=exc) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise botocore.exceptions.ConnectionClosedError(
                endpoint_url=request.url, error=exc, request=request
            ) from exc
        return response
