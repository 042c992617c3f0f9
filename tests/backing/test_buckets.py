"""The bucket store (integrations/backing/buckets.py) against moto's server with IAM enforced.

The server (tests/support/s3_server.py, ``enforce_iam=True``) checks every
request's signature and the signing user's policies as AWS does, so what a
key issued to one environment can and cannot do is really tried, not read
from the policy document.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest

from envhub.errors import BackingServiceError, BackingServiceUnavailable
from envhub.integrations.backing.base import BackingKind, KeyPair, instance_name
from envhub.integrations.backing.buckets import USER_PATH, S3Buckets
from tests.support.components import require
from tests.support.net import free_port
from tests.support.s3_server import REGION, S3Server, private_s3

A = instance_name(12, "files")
B = instance_name(13, "files")


@pytest.fixture(scope="module")
def iam_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    require("moto")
    with private_s3(tmp_path_factory.mktemp("s3iam"), enforce_iam=True) as server:
        yield server


def _kwargs(server: S3Server) -> dict[str, str]:
    return {
        "endpoint_url": server.url,
        "iam_endpoint_url": server.url,
        "region": REGION,
        "access_key_id": server.access_key_id,
        "secret_access_key": server.secret_access_key,
    }


def _store(server: S3Server, prefix: str = "", **overrides: str) -> S3Buckets:
    """A store of the administrator's, with a prefix of its own (so tests sharing the server never meet)."""
    values = {
        **_kwargs(server),
        "bucket_prefix": prefix or f"t{uuid.uuid4().hex[:10]}",
        "workload_endpoint_url": "http://s3.example.test:9000",
    }
    values.update(overrides)
    return S3Buckets(**values)


def _as(server: S3Server, key: KeyPair) -> Any:
    return server.client("s3", key.access_key_id, key.secret_access_key)


def _refusal(call: Callable[[], object]) -> str:
    """The error code S3 answers ``call`` with (the call must fail)."""
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        call()
    return str(refused.value.response["Error"]["Code"])


def _users(server: S3Server) -> list[str]:
    return [u["UserName"] for u in server.client("iam").list_users(PathPrefix=USER_PATH)["Users"]]


def test_ensure_twice_makes_one_bucket_and_one_user_and_says_where(iam_s3: S3Server) -> None:
    store = _store(iam_s3)
    bucket = f"{store.bucket_prefix}-e12-files"

    first = store.ensure(A)
    assert store.ensure(A) == first
    assert first.kind is BackingKind.bucket
    assert (first.host, first.port) == ("s3.example.test", 9000)
    assert (first.database, first.endpoint_url, first.region) == (
        bucket,
        "http://s3.example.test:9000",
        REGION,
    )
    assert (first.username, first.password) == ("", "")
    buckets = [b["Name"] for b in iam_s3.client().list_buckets()["Buckets"]]
    assert buckets.count(bucket) == 1
    assert _users(iam_s3).count(bucket) == 1
    assert _store(iam_s3, workload_endpoint_url="").ensure(B).endpoint_url == iam_s3.url


def test_a_bucket_outside_us_east_1_is_made_in_its_region(iam_s3: S3Server) -> None:
    store = _store(iam_s3, region="eu-west-1", workload_endpoint_url="")
    access = store.ensure(A)
    assert store.ensure(A) == access
    assert access.region == "eu-west-1"
    location = iam_s3.client().get_bucket_location(Bucket=access.database)
    assert location["LocationConstraint"] == "eu-west-1"


def test_a_key_reaches_its_own_bucket_and_nothing_else(iam_s3: S3Server) -> None:
    store = _store(iam_s3)
    bucket_a, bucket_b = store.ensure(A).database, store.ensure(B).database
    key_a, key_b = store.issue_key(A), store.issue_key(B)
    a, b = _as(iam_s3, key_a), _as(iam_s3, key_b)

    a.put_object(Bucket=bucket_a, Key="notes/a.txt", Body=b"from a")
    assert a.get_object(Bucket=bucket_a, Key="notes/a.txt")["Body"].read() == b"from a"
    assert [o["Key"] for o in a.list_objects_v2(Bucket=bucket_a)["Contents"]] == ["notes/a.txt"]
    b.put_object(Bucket=bucket_b, Key="secret", Body=b"from b")

    assert _refusal(lambda: a.get_object(Bucket=bucket_b, Key="secret")) == "AccessDenied"
    assert _refusal(lambda: a.list_objects_v2(Bucket=bucket_b)) == "AccessDenied"
    assert _refusal(lambda: a.put_object(Bucket=bucket_b, Key="x", Body=b"")) == "AccessDenied"
    assert _refusal(lambda: a.delete_object(Bucket=bucket_b, Key="secret")) == "AccessDenied"
    assert _refusal(lambda: a.create_bucket(Bucket=f"{store.bucket_prefix}-mine")) == "AccessDenied"
    assert _refusal(lambda: a.delete_bucket(Bucket=bucket_a)) == "AccessDenied"
    assert iam_s3.client().get_object(Bucket=bucket_b, Key="secret")["Body"].read() == b"from b"


def test_issuing_a_key_again_retires_every_older_key(iam_s3: S3Server) -> None:
    store = _store(iam_s3)
    bucket = store.ensure(A).database
    old = store.issue_key(A)
    _as(iam_s3, old).put_object(Bucket=bucket, Key="k", Body=b"1")
    # A second key made behind envhub's back: IAM's limit of two is reached.
    stray = iam_s3.client("iam").create_access_key(UserName=bucket)["AccessKey"]["AccessKeyId"]

    new = store.issue_key(A)

    assert new.access_key_id not in (old.access_key_id, stray)
    keys = iam_s3.client("iam").list_access_keys(UserName=bucket)["AccessKeyMetadata"]
    assert [k["AccessKeyId"] for k in keys] == [new.access_key_id]
    assert _refusal(lambda: _as(iam_s3, old).get_object(Bucket=bucket, Key="k")) == "InvalidAccessKeyId"
    assert _as(iam_s3, new).get_object(Bucket=bucket, Key="k")["Body"].read() == b"1"
    assert new.secret_access_key not in repr(new)


def test_remove_deletes_the_bucket_its_objects_versions_user_and_keys_and_is_quiet_after(
    iam_s3: S3Server,
) -> None:
    store = _store(iam_s3)
    bucket = store.ensure(A).database
    key = store.issue_key(A)
    admin = iam_s3.client()
    admin.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    client = _as(iam_s3, key)
    for n in range(5):
        client.put_object(Bucket=bucket, Key=f"d/{n}", Body=b"v1")
    client.put_object(Bucket=bucket, Key="d/0", Body=b"v2")  # a second version
    client.delete_object(Bucket=bucket, Key="d/1")  # a delete marker

    store.remove(A)

    assert _refusal(lambda: admin.head_bucket(Bucket=bucket)) == "404"
    assert bucket not in _users(iam_s3)
    assert _refusal(lambda: client.list_objects_v2(Bucket=bucket)) == "InvalidAccessKeyId"
    store.remove(A)  # quiet when gone
    store.remove(instance_name(99, "never"))  # and when never made


def test_remove_finishes_what_a_half_done_remove_left(iam_s3: S3Server) -> None:
    store = _store(iam_s3)
    bucket = store.ensure(A).database
    iam_s3.client().put_object(Bucket=bucket, Key="left", Body=b"x")
    iam = iam_s3.client("iam")
    iam.delete_user_policy(UserName=bucket, PolicyName="envhub-bucket")
    iam.delete_user(UserName=bucket)  # the user went, the bucket stayed

    assert store.names() == {A}
    store.remove(A)
    assert store.names() == set()


def test_names_lists_this_stores_instances_only(iam_s3: S3Server) -> None:
    store = _store(iam_s3)
    other = _store(iam_s3)  # another envhub's prefix on the same account
    store.ensure(A)
    other.ensure(B)
    admin, iam = iam_s3.client(), iam_s3.client("iam")
    admin.create_bucket(Bucket=f"{store.bucket_prefix}-e0-files")  # looks alike, is no instance
    admin.create_bucket(Bucket=f"{store.bucket_prefix}-unrelated")
    iam.create_user(UserName=f"{store.bucket_prefix}-nobody", Path=USER_PATH)
    iam.create_user(UserName=f"{store.bucket_prefix}-e14-files")  # not under /envhub/
    iam.create_user(UserName=f"{store.bucket_prefix}-e15-files", Path=USER_PATH)  # a user left alone

    assert store.names() == {A, instance_name(15, "files")}
    assert other.names() == {B}


def test_a_name_that_makes_an_illegal_bucket_is_refused_before_anything_is_made(iam_s3: S3Server) -> None:
    prefix = "p" * 40
    store = _store(iam_s3, prefix)
    long_name = instance_name(123456, "s" * 20)  # 40 + 8 + 21 characters

    with pytest.raises(BackingServiceError, match="63") as refused:
        store.ensure(long_name)
    assert "shorter bucket prefix" in str(refused.value)
    assert not any(b["Name"].startswith(prefix) for b in iam_s3.client().list_buckets()["Buckets"])
    assert store.ensure(instance_name(1, "files")).database == f"{prefix}-e1-files"
    for bad in ("", "Upper", "under_score", "dot.ted", "-dash", "xn--punycode", "p" * 43):
        with pytest.raises(ValueError, match="bucket prefix"):
            S3Buckets(**_kwargs(iam_s3), bucket_prefix=bad)
    with pytest.raises(ValueError, match="not an instance name"):
        store.bucket_name("files")


def test_refusals_and_unreachable_stores_become_envhubs_errors(iam_s3: S3Server, tmp_path: Path) -> None:
    wrong = _store(iam_s3, access_key_id="AKIAIOSFODNN7EXAMPLE", secret_access_key="nope")
    with pytest.raises(BackingServiceError) as refused:
        wrong.ensure(A)
    assert not isinstance(refused.value, BackingServiceUnavailable)
    assert isinstance(refused.value.__cause__, botocore.exceptions.ClientError)
    assert "InvalidAccessKeyId" in str(refused.value)

    with pytest.raises(BackingServiceError, match=r"made by ensure.*NoSuchEntity"):
        _store(iam_s3).issue_key(A)  # no user yet

    nowhere = f"http://127.0.0.1:{free_port()}"
    gone = _store(iam_s3, endpoint_url=nowhere, iam_endpoint_url=nowhere)
    for call in (lambda: gone.ensure(A), gone.names, lambda: gone.remove(A)):
        with pytest.raises(BackingServiceUnavailable) as unavailable:
            call()
        assert isinstance(unavailable.value.__cause__, botocore.exceptions.BotoCoreError)
