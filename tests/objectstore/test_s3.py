"""The object-store port's boto3 adapter (integrations/s3.py) against a real S3-compatible server.

moto's standalone server (tests/support/s3_server.py) speaks S3's HTTP API; the
adapter reaches it as it would reach AWS S3 or MinIO, so what these tests see is
what an operator's bucket would do.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from envhub import wiring
from envhub.config import override_settings
from envhub.errors import NotFound, ObjectStoreError, ObjectStoreUnavailable
from envhub.integrations.s3 import S3Access, S3ObjectStore
from envhub.services import ports
from tests.conftest import build_settings
from tests.support.net import free_port
from tests.support.s3_server import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, S3Server


def _store(s3_server: S3Server, bucket: str, **overrides: object) -> S3ObjectStore:
    values: dict[str, object] = {
        "bucket": bucket,
        "endpoint_url": s3_server.url,
        "region": REGION,
        "access_key_id": ACCESS_KEY_ID,
        "secret_access_key": SECRET_ACCESS_KEY,
        "connect_timeout": 2.0,
        "read_timeout": 5.0,
    }
    values.update(overrides)
    return S3ObjectStore(S3Access(**values))  # type: ignore[arg-type]


def test_a_file_goes_up_is_read_back_in_chunks_and_deleted(s3_server: S3Server, tmp_path: Path) -> None:
    bucket = s3_server.new_bucket()
    store = _store(s3_server, bucket)
    data = os.urandom(700 * 1024) + "é\n".encode()
    path = tmp_path / "s.cast"
    path.write_bytes(data)
    key = "recordings/7/2026-12-07/s.cast"

    assert store.location(key) == f"s3://{bucket}/{key}"
    assert store.size(key) is None
    assert store.upload(key, path) == len(data)
    assert store.size(key) == len(data)
    stored = s3_server.client().get_object(Bucket=bucket, Key=key)["Body"].read()
    assert stored == data
    chunks = list(store.read(key, chunk_bytes=256 * 1024))
    assert len(chunks) > 1
    assert b"".join(chunks) == data

    path.write_bytes(b"replaced")  # an upload replaces what is there
    assert store.upload(key, path) == len(b"replaced")
    assert b"".join(store.read(key)) == b"replaced"

    store.delete(key)
    assert store.size(key) is None
    store.delete(key)  # quiet when already gone
    with pytest.raises(NotFound):
        store.read(key)


def test_a_missing_bucket_is_refused_and_an_absent_server_is_unavailable(
    s3_server: S3Server, tmp_path: Path
) -> None:
    path = tmp_path / "s.cast"
    path.write_bytes(b"{}\n")
    missing = _store(s3_server, "no-such-bucket-here")
    with pytest.raises(ObjectStoreError) as refused:
        missing.upload("recordings/s.cast", path)
    assert refused.value.code == "object_store_error"
    assert "NoSuchBucket" in refused.value.message
    assert not refused.value.retryable

    nobody = _store(s3_server, "b-1", endpoint_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ObjectStoreUnavailable) as unreachable:
        nobody.upload("recordings/s.cast", path)
    assert unreachable.value.code == "object_store_unavailable"
    assert unreachable.value.retryable
    assert SECRET_ACCESS_KEY not in str(unreachable.value)
    with pytest.raises(ObjectStoreUnavailable):
        nobody.size("recordings/s.cast")


def test_the_wiring_builds_the_store_from_settings_and_none_without_a_bucket(
    s3_server: S3Server, tmp_path: Path
) -> None:
    bucket = s3_server.new_bucket()
    try:
        with override_settings(build_settings(data_dir=tmp_path, **s3_server.settings(bucket))):
            ports.reset()
            store = ports.object_store()
            assert isinstance(store, S3ObjectStore)
            path = tmp_path / "a"
            path.write_bytes(b"wired")
            store.upload("recordings/a", path)
            assert s3_server.client().head_object(Bucket=bucket, Key="recordings/a")["ContentLength"] == 5
        with override_settings(build_settings(data_dir=tmp_path)):
            ports.reset()
            assert ports.object_store() is None
    finally:
        wiring.install()
        ports.reset()
