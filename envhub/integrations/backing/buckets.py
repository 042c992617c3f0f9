"""The bucket store of the managed services on an operator's S3 endpoint that speaks IAM (AWS, moto).

Each instance is a bucket, an IAM user, and an inline policy of that user
that reaches this bucket and its objects and nothing else: the key pairs
:meth:`S3Buckets.issue_key` hands to an environment can list, read and write
their own bucket, and cannot see, create or touch any other.

Names: bucket names are global across S3 and cannot hold ``_``, so an
instance ``envhub_e12_files`` is bucket ``<prefix>-e12-files``, with a prefix
the operator chooses (unique to this envhub). The IAM user has the same name
as the bucket, under the path ``/envhub/``: two envhubs sharing an AWS
account with different prefixes never list, nor remove, each other's users.

Every step is idempotent (create what is missing, accept what is there), so a
job killed half-way and run again converges. Errors follow the port's
contract (base.py), read through integrations/aws.py.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from envhub.errors import BackingServiceError, BackingServiceUnavailable
from envhub.integrations.aws import FAILURES, failure, iam_client, s3_client
from envhub.integrations.backing.base import Access, BackingKind, KeyPair, parse_instance_name

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_s3 import S3Client

USER_PATH = "/envhub/"
POLICY_NAME = "envhub-bucket"
# A prefix is the first label of a DNS-safe bucket name: no dots (they break TLS on
# virtual-hosted addressing), no leading or trailing hyphen.
_PREFIX = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,40}[a-z0-9])?$")
_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
# Codes meaning "already gone": a remove is quiet about them.
_GONE = {"NoSuchBucket", "NoSuchEntity", "NoSuchKey", "404", "NotFound"}
_DELETE_BATCH = 1000  # DeleteObjects' limit


class S3Buckets:
    """:class:`~envhub.integrations.backing.base.BucketStore` on S3 + IAM. Thread-safe."""

    def __init__(
        self,
        *,
        endpoint_url: str,
        iam_endpoint_url: str,
        region: str,
        access_key_id: str,
        secret_access_key: str,
        bucket_prefix: str,
        workload_endpoint_url: str = "",
    ) -> None:
        """``endpoint_url``/``iam_endpoint_url`` empty: AWS's. ``workload_endpoint_url``: the S3 endpoint as
        environments reach it, when it differs from envhub's (empty: the same)."""
        if not _PREFIX.fullmatch(bucket_prefix) or bucket_prefix.startswith(_RESERVED_PREFIXES):
            raise ValueError(
                f"bucket prefix {bucket_prefix!r}: use lower-case letters, digits and inner hyphens "
                f"(at most 42 characters), not starting with {', '.join(_RESERVED_PREFIXES)}"
            )
        self.endpoint_url = endpoint_url
        self.iam_endpoint_url = iam_endpoint_url
        self.region = region or "us-east-1"
        self.bucket_prefix = bucket_prefix
        self.workload_endpoint_url = (
            workload_endpoint_url or endpoint_url or f"https://s3.{self.region}.amazonaws.com"
        )
        self._key = (access_key_id, secret_access_key)
        self._names = re.compile(rf"^{re.escape(bucket_prefix)}-e([1-9][0-9]*)-([a-z][a-z0-9]*)$")
        self._s3_client: S3Client | None = None
        self._iam_client: IAMClient | None = None
        self._lock = threading.Lock()

    # -- names -------------------------------------------------------------------------------

    def bucket_name(self, name: str) -> str:
        """The bucket (and IAM user) of instance ``name``; refused when S3 would refuse it."""
        parsed = parse_instance_name(name)
        if parsed is None:
            raise ValueError(f"{name!r} is not an instance name")
        environment, service = parsed
        bucket = f"{self.bucket_prefix}-e{environment}-{service}"
        if not _BUCKET_NAME.fullmatch(bucket):
            raise BackingServiceError(
                f"instance {name} would be bucket {bucket!r}, which S3 refuses: a bucket name has 3 to "
                f"63 lower-case letters, digits and hyphens ({len(bucket)} here). "
                "Choose a shorter bucket prefix."
            )
        return bucket

    def _instance(self, bucket_or_user: str) -> str | None:
        match = self._names.fullmatch(bucket_or_user)
        if match is None or len(match.group(2)) > 20:
            return None
        name = f"envhub_e{match.group(1)}_{match.group(2)}"
        return name if parse_instance_name(name) else None

    # -- the port ------------------------------------------------------------------------------

    def ensure(self, name: str) -> Access:
        bucket = self.bucket_name(name)
        self._ensure_bucket(bucket)
        with self._calling(f"creating IAM user {bucket}", tolerate={"EntityAlreadyExists"}):
            self._iam().create_user(UserName=bucket, Path=USER_PATH)
        with self._calling(f"setting the policy of IAM user {bucket}"):
            self._iam().put_user_policy(
                UserName=bucket, PolicyName=POLICY_NAME, PolicyDocument=policy(bucket)
            )
        endpoint = urlsplit(self.workload_endpoint_url)
        return Access(
            kind=BackingKind.bucket,
            host=endpoint.hostname or "",
            port=endpoint.port or (443 if endpoint.scheme == "https" else 80),
            username="",
            password="",
            database=bucket,
            endpoint_url=self.workload_endpoint_url,
            region=self.region,
        )

    def issue_key(self, name: str) -> KeyPair:
        user = self.bucket_name(name)
        iam = self._iam()
        # NoSuchEntity here means ensure() has not run: the message says so.
        with self._calling(f"listing the keys of IAM user {user} (made by ensure)"):
            older = sorted(
                iam.list_access_keys(UserName=user)["AccessKeyMetadata"], key=lambda k: k["CreateDate"]
            )
        # IAM allows two keys per user: make room first, oldest first.
        while len(older) >= 2:
            self._delete_key(user, older.pop(0)["AccessKeyId"])
        with self._calling(f"creating a key for IAM user {user}"):
            created = iam.create_access_key(UserName=user)["AccessKey"]
        for key in older:
            self._delete_key(user, key["AccessKeyId"])
        return KeyPair(access_key_id=created["AccessKeyId"], secret_access_key=created["SecretAccessKey"])

    def remove(self, name: str) -> None:
        bucket = self.bucket_name(name)
        # The keys go first, so a workload still writing stops before the bucket is emptied.
        self._remove_user(bucket)
        self._empty(bucket)
        with self._calling(f"deleting bucket {bucket}", tolerate=_GONE):
            self._s3().delete_bucket(Bucket=bucket)

    def names(self) -> set[str]:
        found: set[str] = set()
        with self._calling("listing envhub's IAM users"):
            for page in self._iam().get_paginator("list_users").paginate(PathPrefix=USER_PATH):
                found.update(n for user in page["Users"] if (n := self._instance(user["UserName"])))
        with self._calling("listing buckets"):
            buckets = self._s3().list_buckets().get("Buckets", [])
        found.update(n for bucket in buckets if (n := self._instance(bucket.get("Name", ""))))
        return found

    # -- steps ---------------------------------------------------------------------------------

    def _ensure_bucket(self, bucket: str) -> None:
        s3 = self._s3()
        with self._calling(f"creating bucket {bucket}", tolerate={"BucketAlreadyOwnedByYou"}):
            if self.region == "us-east-1":
                s3.create_bucket(Bucket=bucket)
            else:
                s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": self.region})  # type: ignore[typeddict-item]

    def _delete_key(self, user: str, key_id: str) -> None:
        with self._calling(f"deleting a key of IAM user {user}", tolerate=_GONE):
            self._iam().delete_access_key(UserName=user, AccessKeyId=key_id)

    def _remove_user(self, user: str) -> None:
        iam = self._iam()
        with self._calling(f"listing the keys of IAM user {user}", tolerate=_GONE):
            for key in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]:
                self._delete_key(user, key["AccessKeyId"])
        with self._calling(f"deleting the policy of IAM user {user}", tolerate=_GONE):
            iam.delete_user_policy(UserName=user, PolicyName=POLICY_NAME)
        with self._calling(f"deleting IAM user {user}", tolerate=_GONE):
            iam.delete_user(UserName=user)

    def _empty(self, bucket: str) -> None:
        """Delete every object of ``bucket``, every version and delete marker when it is versioned."""
        s3 = self._s3()
        with self._calling(f"emptying bucket {bucket}", tolerate=_GONE):
            for listed in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                self._delete_objects(bucket, [{"Key": o["Key"]} for o in listed.get("Contents", [])])
            # Stores without versioning (R2, older MinIO) answer "Status" absent: nothing more to do.
            if s3.get_bucket_versioning(Bucket=bucket).get("Status") in ("Enabled", "Suspended"):
                for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
                    versions = [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
                    objects = [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in versions]
                    self._delete_objects(bucket, objects)
            for uploads in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
                for upload in uploads.get("Uploads", []):
                    s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])

    def _delete_objects(self, bucket: str, objects: list[dict[str, str]]) -> None:
        for start in range(0, len(objects), _DELETE_BATCH):
            batch = objects[start : start + _DELETE_BATCH]
            answer = self._s3().delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})  # type: ignore[typeddict-item]
            errors = [e for e in answer.get("Errors", []) if e.get("Code") not in _GONE]
            if errors:
                first = errors[0]
                raise BackingServiceError(
                    f"emptying bucket {bucket}: {len(errors)} objects not deleted "
                    f"(first: {first.get('Key')}: {first.get('Code')} {first.get('Message')})"
                )

    # -- clients and errors --------------------------------------------------------------------

    @contextmanager
    def _calling(self, what: str, *, tolerate: set[str] | frozenset[str] = frozenset()) -> Iterator[None]:
        """Run boto3 calls; envhub's errors for their failures, none for the codes in ``tolerate``."""
        try:
            yield
        except FAILURES as exc:
            read = failure(exc)
            if read.code in tolerate:
                return
            if read.unavailable:
                detail = f"answered {read.status} {read.message}" if read.answered else read.message
                raise BackingServiceUnavailable(f"{what}: the S3 store {detail}") from exc
            raise BackingServiceError(
                f"{what}: the S3 store refused it ({read.code}: {read.message})"
            ) from exc

    def _s3(self) -> S3Client:
        # boto3 clients are thread-safe once built; building one is not.
        with self._lock:
            if self._s3_client is None:
                self._s3_client = s3_client(
                    endpoint_url=self.endpoint_url,
                    region=self.region,
                    access_key_id=self._key[0],
                    secret_access_key=self._key[1],
                )
            return self._s3_client

    def _iam(self) -> IAMClient:
        with self._lock:
            if self._iam_client is None:
                self._iam_client = iam_client(
                    endpoint_url=self.iam_endpoint_url,
                    region=self.region,
                    access_key_id=self._key[0],
                    secret_access_key=self._key[1],
                )
            return self._iam_client


def policy(bucket: str) -> str:
    """The inline policy of an instance's user: list its bucket, do anything to the objects in it."""
    arn = f"arn:aws:s3:::{bucket}"
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "ListTheBucket",
                    "Effect": "Allow",
                    "Action": ["s3:ListBucket", "s3:GetBucketLocation", "s3:ListBucketMultipartUploads"],
                    "Resource": arn,
                },
                {"Sid": "UseItsObjects", "Effect": "Allow", "Action": "s3:*", "Resource": f"{arn}/*"},
            ],
        }
    )
