"""A real S3-compatible server for the object-store tests: moto's standalone server, in its own process.

envhub's boto3 adapter talks HTTP to it exactly as to AWS S3 or MinIO (path
addressing, SigV4), so the production code path runs unchanged; nothing of
envhub's is mocked. The server keeps its buckets in memory: :meth:`stop` and
:meth:`start` again on the same port give an empty server (the tests of a
store that goes away and comes back create their bucket again).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3

from tests.support.net import free_port, port_open
from tests.support.waiting import wait_ended, wait_for

# moto accepts any key pair; these only have to be the same on both sides.
ACCESS_KEY_ID = "envhub-test"
SECRET_ACCESS_KEY = "envhub-test-secret"
REGION = "us-east-1"


class S3Server:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> S3Server:
        log = (self.folder / f"moto-{self.port}.log").open("ab")
        argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        process = self.process
        wait_for(
            lambda: port_open(self.port) or process.poll() is not None,
            timeout=60,
            what="moto's S3 server",
        )
        if process.poll() is not None:
            raise RuntimeError(f"moto's server exited: {self.log()[-2000:]}")
        return self

    def stop(self) -> None:
        if self.process is not None:
            wait_ended(self.process)
        self.process = None

    def log(self) -> str:
        path = self.folder / f"moto-{self.port}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def client(self) -> Any:
        """A boto3 S3 client of the test's own, to look at what envhub stored."""
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
        )

    def new_bucket(self, name: str = "") -> str:
        bucket = name or f"envhub-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=bucket)
        return bucket

    def settings(self, bucket: str) -> dict[str, str]:
        """envhub's settings (lower-case field names) for ``bucket`` on this server."""
        return {
            "object_store_url": self.url,
            "object_store_bucket": bucket,
            "object_store_region": REGION,
            "object_store_access_key_id": ACCESS_KEY_ID,
            "object_store_secret_access_key": SECRET_ACCESS_KEY,
        }

    def environment(self, bucket: str) -> dict[str, str]:
        """The same, as ENVHUB_* variables for a server process."""
        return {f"ENVHUB_{key.upper()}": value for key, value in self.settings(bucket).items()}


@contextlib.contextmanager
def private_s3(folder: Path) -> Iterator[S3Server]:
    server = S3Server(folder).start()
    try:
        yield server
    finally:
        server.stop()
