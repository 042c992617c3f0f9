"""A real S3-compatible server for the object-store tests: moto's standalone server, in its own process.

envhub's boto3 adapter talks HTTP to it exactly as to AWS S3 or MinIO (path
addressing, SigV4), so the production code path runs unchanged; nothing of
envhub's is mocked. The server keeps its buckets in memory: :meth:`stop` and
:meth:`start` again on the same port give an empty server (the tests of a
store that goes away and comes back create their bucket again).

By default moto accepts any key pair. ``S3Server(folder, enforce_iam=True)``
starts it with IAM authorization enforced (moto's ``INITIAL_NO_AUTH_ACTION_COUNT``):
its first unauthenticated calls make an administrator user and its key,
which :attr:`S3Server.access_key_id` then holds; from there on every request
must be signed by a known key and be allowed by that key's user's policies,
as on AWS, so tests can check what a scoped key cannot do.
"""

from __future__ import annotations

import contextlib
import json
import os
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

# With IAM enforced: the administrator made during the unauthenticated calls, and how many
# calls that takes (create the user, give it its policy, make its key).
ADMIN_USER = "envhub-admin"
_BOOTSTRAP_CALLS = 3


class S3Server:
    def __init__(self, folder: Path, *, enforce_iam: bool = False) -> None:
        self.folder = folder
        self.enforce_iam = enforce_iam
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.access_key_id = ACCESS_KEY_ID
        self.secret_access_key = SECRET_ACCESS_KEY

    def start(self) -> S3Server:
        log = (self.folder / f"moto-{self.port}.log").open("ab")
        argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        environment = dict(os.environ)
        environment.pop("INITIAL_NO_AUTH_ACTION_COUNT", None)
        if self.enforce_iam:
            environment["INITIAL_NO_AUTH_ACTION_COUNT"] = str(_BOOTSTRAP_CALLS)
        self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=environment)
        log.close()
        process = self.process
        wait_for(
            lambda: port_open(self.port) or process.poll() is not None,
            timeout=60,
            what="moto's S3 server",
        )
        if process.poll() is not None:
            raise RuntimeError(f"moto's server exited: {self.log()[-2000:]}")
        if self.enforce_iam:
            self._make_admin()
        return self

    def _make_admin(self) -> None:
        """The administrator user and key, made by the calls moto leaves unauthenticated (exactly those)."""
        iam = self.client("iam", ACCESS_KEY_ID, SECRET_ACCESS_KEY)
        iam.create_user(UserName=ADMIN_USER)
        everything = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
        }
        iam.put_user_policy(
            UserName=ADMIN_USER, PolicyName="everything", PolicyDocument=json.dumps(everything)
        )
        key = iam.create_access_key(UserName=ADMIN_USER)["AccessKey"]
        self.access_key_id, self.secret_access_key = key["AccessKeyId"], key["SecretAccessKey"]

    def stop(self) -> None:
        if self.process is not None:
            wait_ended(self.process)
        self.process = None

    def log(self) -> str:
        path = self.folder / f"moto-{self.port}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def client(self, service: str = "s3", access_key_id: str = "", secret_access_key: str = "") -> Any:
        """A boto3 client of the test's own (by default with the administrator's key), to look at what
        envhub stored."""
        return boto3.session.Session().client(
            service,  # type: ignore[call-overload]
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=access_key_id or self.access_key_id,
            aws_secret_access_key=secret_access_key or self.secret_access_key,
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
            "object_store_access_key_id": self.access_key_id,
            "object_store_secret_access_key": self.secret_access_key,
        }

    def environment(self, bucket: str) -> dict[str, str]:
        """The same, as ENVHUB_* variables for a server process."""
        return {f"ENVHUB_{key.upper()}": value for key, value in self.settings(bucket).items()}


@contextlib.contextmanager
def private_s3(folder: Path, *, enforce_iam: bool = False) -> Iterator[S3Server]:
    server = S3Server(folder, enforce_iam=enforce_iam).start()
    try:
        yield server
    finally:
        server.stop()
