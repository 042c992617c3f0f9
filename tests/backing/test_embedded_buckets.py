"""The embedded buckets (integrations/backing/embedded_buckets.py) with real s3rver processes.

Each test gets its own folder under /tmp (a socket path must fit in 107
bytes) and stops every server it started. Clients are boto3's, talking to the
server's UNIX socket as the relay would carry a workload's requests; raw
requests (anonymous, forged, crafted paths) go over the same socket.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import signal
import socket
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import botocore.exceptions
import psutil
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from envhub.errors import BackingServiceError, BackingServiceUnavailable
from envhub.integrations.aws import s3_client
from envhub.integrations.backing.base import Access, BackingKind, KeyPair, instance_name
from envhub.integrations.backing.embedded_buckets import (
    ENDPOINT_URL,
    LAUNCHER,
    S3RVER_VERSION,
    EmbeddedBuckets,
    default_s3rver,
)
from envhub.runtime.local.relays import private_socket_problem
from tests.support.components import require

A = instance_name(1, "files")
B = instance_name(2, "files")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def folder() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="envhub-s3-", dir="/tmp")) / "services" / "buckets"
    yield path
    EmbeddedBuckets(path, node=shutil.which("node"), s3rver=default_s3rver()).stop_all()
    for stray in servers_in(path):  # a second server, had the lock failed
        stray.kill()
    shutil.rmtree(path.parents[1], ignore_errors=True)


@pytest.fixture
def store(folder: Path) -> EmbeddedBuckets:
    require("node")
    return EmbeddedBuckets(folder, node=shutil.which("node"), s3rver=Path(str(require("s3rver"))))


def tenant(access: Access, key: KeyPair) -> Any:
    """A workload's client, as the relay carries it: the endpoint it is given, over the socket."""
    return s3_client(
        endpoint_url=access.endpoint_url,
        region=access.region,
        access_key_id=key.access_key_id,
        secret_access_key=key.secret_access_key,
        max_attempts=1,
        unix_socket=access.unix_socket,
    )


def refusal(call: Any) -> str:
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        call()
    return str(refused.value.response["Error"]["Code"])


def raw(
    access: Access, method: str, url: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """(status, body) of one request sent as given over the instance's socket."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection("localhost", timeout=10)
    connection.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.sock.connect(access.unix_socket)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    sent = {"Host": parts.netloc, **(headers or {})}
    connection.request(method, target, body=body, headers=sent)
    response = connection.getresponse()
    answer = response.status, response.read()
    connection.close()
    return answer


def signed(access: Access, key: KeyPair, method: str, url: str, body: bytes = b"") -> tuple[int, bytes]:
    """A request signed with ``key`` exactly as botocore signs (whatever its path and host say)."""
    request = AWSRequest(method=method, url=url, data=body)
    request.headers["x-amz-content-sha256"] = hashlib.sha256(body).hexdigest()
    S3SigV4Auth(Credentials(key.access_key_id, key.secret_access_key), "s3", "us-east-1").add_auth(request)
    return raw(access, method, url, body, dict(request.headers.items()))


def code_of(body: bytes) -> str:
    found = re.search(rb"<Code>([^<]+)</Code>", body)
    return found.group(1).decode() if found else ""


def server_of(store: EmbeddedBuckets, name: str) -> psutil.Process:
    return psutil.Process(int((store.home(name) / "s3.pid").read_text()))


def servers_in(folder: Path) -> list[psutil.Process]:
    """Every bucket server whose config lies under ``folder`` (whatever the pidfiles say)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        argv = process.info["cmdline"] or []
        if "--serve" in argv and str(folder) in (argv[-1] if argv else ""):
            found.append(process)
    return found


def test_ensure_is_idempotent_private_and_reachable_by_socket_only(store: EmbeddedBuckets) -> None:
    first = store.ensure(A)
    assert store.ensure(A) == first
    assert first.kind is BackingKind.bucket
    assert (first.host, first.port, first.endpoint_url, first.region) == (
        "127.0.0.1",
        9000,
        "http://127.0.0.1:9000",
        "us-east-1",
    )
    assert (first.username, first.password) == ("", "")  # issue_key gives the pair
    assert first.database == "envhub-e1-files"
    assert store.names() == {A}
    home = store.home(A)
    assert first.unix_socket == str(home / "s3.sock")
    assert private_socket_problem(first.unix_socket) is None  # what the relay checks before connecting
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "server.json").stat().st_mode) == 0o600
    assert stat.S_IMODE(os.stat(first.unix_socket).st_mode) & 0o077 == 0
    assert (home / "data" / "envhub-e1-files").is_dir()
    # One server, and nothing of a key on its command line or in its environment.
    [server] = servers_in(store.folder)
    assert server.pid == server_of(store, A).pid
    key = store.issue_key(A)
    server = server_of(store, A)
    exposed = " ".join(server.cmdline()) + " ".join(f"{k}={v}" for k, v in server.environ().items())
    assert key.secret_access_key not in exposed
    assert key.access_key_id not in exposed
    assert server.cmdline()[-3:] == [str(LAUNCHER), "--serve", str(home / "server.json")]


def test_a_key_pair_reads_and_writes_its_bucket_and_a_new_one_retires_it(store: EmbeddedBuckets) -> None:
    access = store.ensure(A)
    old = store.issue_key(A)
    client = tenant(access, old)
    client.put_object(Bucket=access.database, Key="notes/a.txt", Body=b"from a")
    assert client.get_object(Bucket=access.database, Key="notes/a.txt")["Body"].read() == b"from a"
    assert [o["Key"] for o in client.list_objects_v2(Bucket=access.database)["Contents"]] == ["notes/a.txt"]
    pid = server_of(store, A).pid

    new = store.issue_key(A)
    assert new.access_key_id != old.access_key_id
    assert server_of(store, A).pid != pid  # restarted on the new pair
    assert refusal(lambda: client.get_object(Bucket=access.database, Key="notes/a.txt")) == (
        "InvalidAccessKeyId"
    )
    assert store.ensure(A) == access
    # The data folder was kept.
    assert tenant(access, new).get_object(Bucket=access.database, Key="notes/a.txt")["Body"].read() == (
        b"from a"
    )
    assert refusal(lambda: client.list_objects_v2(Bucket=access.database)) == "InvalidAccessKeyId"


def test_only_requests_signed_with_a_pair_of_the_instance_are_served(store: EmbeddedBuckets) -> None:
    access = store.ensure(A)
    key = store.issue_key(A)
    tenant(access, key).put_object(Bucket=access.database, Key="k", Body=b"secret")
    url = f"{ENDPOINT_URL}/{access.database}/k"

    # s3rver alone serves anonymous requests; the launcher does not.
    status, body = raw(access, "GET", url)
    assert (status, code_of(body)) == (403, "AccessDenied")
    assert raw(access, "PUT", f"{ENDPOINT_URL}/{access.database}/new", b"x")[0] == 403
    # Signature Version 2 (s3rver would check it; the launcher takes V4 only).
    status, body = raw(access, "GET", url, headers={"Authorization": f"AWS {key.access_key_id}:c2lnbmF0dXJl"})
    assert (status, code_of(body)) == (403, "AccessDenied")
    # s3rver checks no V4 signature at all: a known key id with a wrong secret is refused here.
    wrong = KeyPair(key.access_key_id, "w" * 40)
    assert refusal(lambda: tenant(access, wrong).get_object(Bucket=access.database, Key="k")) == (
        "SignatureDoesNotMatch"
    )
    # s3rver's built-in key is gone.
    s3rver_key = KeyPair("S3RVER", "S3RVER")
    assert refusal(lambda: tenant(access, s3rver_key).get_object(Bucket=access.database, Key="k")) == (
        "InvalidAccessKeyId"
    )
    # A presigned URL works as signed, and not once touched.
    presigned = tenant(access, key).generate_presigned_url(
        "get_object", Params={"Bucket": access.database, "Key": "k"}, ExpiresIn=60
    )
    assert raw(access, "GET", presigned) == (200, b"secret")
    tampered = presigned.replace("/k?", "/k2?")
    assert raw(access, "GET", tampered)[0] == 403


def test_a_key_reaches_its_own_bucket_on_its_own_server_and_nothing_else(store: EmbeddedBuckets) -> None:
    a, b = store.ensure(A), store.ensure(B)
    assert a.unix_socket != b.unix_socket
    key_a, key_b = store.issue_key(A), store.issue_key(B)
    tenant(b, key_b).put_object(Bucket=b.database, Key="secret", Body=b"from b")
    client_a = tenant(a, key_a)

    # A's pair on B's server (were its socket reachable): unknown there.
    a_on_b = tenant(b, key_a)
    assert refusal(lambda: a_on_b.get_object(Bucket=b.database, Key="secret")) == "InvalidAccessKeyId"
    assert refusal(lambda: a_on_b.list_objects_v2(Bucket=b.database)) == "InvalidAccessKeyId"
    # On its own server: its bucket's objects, not the bucket itself, nor other buckets.
    assert refusal(lambda: client_a.create_bucket(Bucket="envhub-e1-more")) == "AccessDenied"
    assert refusal(lambda: client_a.delete_bucket(Bucket=a.database)) == "AccessDenied"
    assert refusal(lambda: client_a.list_buckets()) == "AccessDenied"
    assert refusal(lambda: client_a.list_objects_v2(Bucket=b.database)) == "AccessDenied"
    # Paths that would leave A's bucket for B's files on disk.
    escape = "../../../envhub_e2_files/data/envhub-e2-files/secret"
    assert refusal(lambda: client_a.get_object(Bucket=a.database, Key=escape)) == "InvalidArgument"
    encoded = "..%2F..%2F..%2Fenvhub_e2_files%2Fdata%2Fenvhub-e2-files%2Fsecret"
    status, body = signed(a, key_a, "GET", f"{ENDPOINT_URL}/{a.database}/{encoded}")
    assert (status, code_of(body)) == (400, "InvalidArgument")
    copy = {"Bucket": a.database, "Key": "stolen", "CopySource": f"{a.database}/{escape}"}
    assert refusal(lambda: client_a.copy_object(**copy)) == "InvalidArgument"
    upload = client_a.create_multipart_upload(Bucket=a.database, Key="big")["UploadId"]
    assert refusal(
        lambda: client_a.upload_part(
            Bucket=a.database, Key="big", UploadId=f"{upload}/../../../../x", PartNumber=1, Body=b"x"
        )
    ) == ("NoSuchUpload")
    complete = (
        b"<CompleteMultipartUpload><Part><PartNumber>../../../../../../etc/hostname</PartNumber>"
        b'<ETag>"x"</ETag></Part></CompleteMultipartUpload>'
    )
    status, body = signed(a, key_a, "POST", f"{ENDPOINT_URL}/{a.database}/big?uploadId={upload}", complete)
    assert (status, code_of(body)) == (400, "InvalidArgument")
    # A virtual-host name would make s3rver read another bucket out of the Host header.
    status, body = signed(a, key_a, "GET", f"http://{b.database}.s3.amazonaws.com/secret")
    assert (status, code_of(body)) == (400, "InvalidRequest")
    assert tenant(b, key_b).get_object(Bucket=b.database, Key="secret")["Body"].read() == b"from b"
    assert [p.name for p in (store.home(A) / "data").iterdir()] == [a.database]


def test_data_and_pairs_survive_a_restart_of_envhub(store: EmbeddedBuckets, folder: Path) -> None:
    access = store.ensure(A)
    key = store.issue_key(A)
    tenant(access, key).put_object(Bucket=access.database, Key="kept", Body=b"still here")
    pid = server_of(store, A).pid

    store.stop_all()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not Path(access.unix_socket).exists()
    fresh = EmbeddedBuckets(folder, node=store.node, s3rver=store.s3rver)  # as after a restart of envhub
    assert fresh.ensure(A) == access
    assert tenant(access, key).get_object(Bucket=access.database, Key="kept")["Body"].read() == b"still here"


def test_a_killed_server_is_started_again_by_ensure(store: EmbeddedBuckets) -> None:
    access = store.ensure(A)
    key = store.issue_key(A)
    tenant(access, key).put_object(Bucket=access.database, Key="kept", Body=b"1")
    killed = server_of(store, A)
    killed.send_signal(signal.SIGKILL)
    killed.wait(5)
    assert Path(access.unix_socket).exists()  # a stale socket, nobody behind it
    with pytest.raises(botocore.exceptions.EndpointConnectionError):
        tenant(access, key).get_object(Bucket=access.database, Key="kept")

    assert store.ensure(A) == access
    assert server_of(store, A).pid != killed.pid
    assert tenant(access, key).get_object(Bucket=access.database, Key="kept")["Body"].read() == b"1"


def test_a_new_pair_written_but_not_served_is_served_by_the_next_ensure(
    store: EmbeddedBuckets, monkeypatch: pytest.MonkeyPatch
) -> None:
    access = store.ensure(A)
    old = store.issue_key(A)
    real_stop = EmbeddedBuckets._stop

    def killed_before_the_restart(self: EmbeddedBuckets, home: Path) -> None:
        raise SystemExit("worker killed")

    monkeypatch.setattr(EmbeddedBuckets, "_stop", killed_before_the_restart)
    with pytest.raises(SystemExit):
        store.issue_key(A)
    monkeypatch.setattr(EmbeddedBuckets, "_stop", real_stop)
    # The caller never stored that pair: it asks again, and the server must take the newest.
    new = store.issue_key(A)
    assert store.ensure(A) == access
    tenant(access, new).put_object(Bucket=access.database, Key="k", Body=b"")
    assert refusal(lambda: tenant(access, old).list_objects_v2(Bucket=access.database)) == (
        "InvalidAccessKeyId"
    )


def test_ensure_repairs_a_server_running_on_an_older_pair(
    store: EmbeddedBuckets, monkeypatch: pytest.MonkeyPatch
) -> None:
    access = store.ensure(A)
    store.issue_key(A)
    pid = server_of(store, A).pid
    monkeypatch.setattr(EmbeddedBuckets, "_stop", lambda self, home: None)  # the restart never happens
    newest = store.issue_key(A)
    monkeypatch.undo()
    assert server_of(store, A).pid == pid
    assert store.ensure(A) == access
    assert server_of(store, A).pid != pid
    tenant(access, newest).put_object(Bucket=access.database, Key="k", Body=b"")


def test_remove_stops_the_server_deletes_its_data_and_is_quiet_when_gone(store: EmbeddedBuckets) -> None:
    access = store.ensure(A)
    store.ensure(B)
    key = store.issue_key(A)
    tenant(access, key).put_object(Bucket=access.database, Key="k", Body=b"x")
    pid = server_of(store, A).pid

    store.remove(A)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not store.home(A).exists()
    assert store.names() == {B}
    store.remove(A)  # quiet when gone
    store.remove(instance_name(99, "files"))
    # Made again from nothing: an empty bucket, and no pair until one is issued.
    again = store.ensure(A)
    fresh = store.issue_key(A)
    assert tenant(again, fresh).list_objects_v2(Bucket=again.database).get("KeyCount") == 0
    assert refusal(lambda: tenant(again, key).list_objects_v2(Bucket=again.database)) == "InvalidAccessKeyId"


def test_concurrent_ensures_start_one_server(store: EmbeddedBuckets) -> None:
    results: list[Access] = []
    errors: list[BaseException] = []

    def ensure() -> None:
        try:
            results.append(store.ensure(A))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ensure) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(set(results)) == 1
    assert len(servers_in(store.folder)) == 1


def test_issue_key_before_ensure_says_so(store: EmbeddedBuckets) -> None:
    with pytest.raises(BackingServiceError, match="ensure"):
        store.issue_key(A)
    with pytest.raises(ValueError, match="instance name"):
        store.ensure("files")


def test_a_missing_node_or_s3rver_is_named_with_how_to_install_it(folder: Path, tmp_path: Path) -> None:
    with pytest.raises(BackingServiceUnavailable) as caught:
        EmbeddedBuckets(folder, node=None, s3rver=default_s3rver()).ensure(A)
    assert "Node.js" in caught.value.message
    assert "make" in caught.value.hint
    with pytest.raises(BackingServiceUnavailable) as caught:
        EmbeddedBuckets(folder, node=shutil.which("node"), s3rver=tmp_path / "s3rver").ensure(A)
    assert f"s3rver {S3RVER_VERSION} is not installed" in caught.value.message
    assert "make setup" in caught.value.hint
    # A path too long for a socket address.
    deep = EmbeddedBuckets(folder / ("d" * 80), node=shutil.which("node"), s3rver=default_s3rver())
    with pytest.raises(BackingServiceError, match="longer than a socket address allows") as caught:
        deep.ensure(A)
    assert "shorter path" in caught.value.hint


def test_the_makefile_installs_the_version_envhub_checks() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert f"S3RVER_VERSION := {S3RVER_VERSION}\n" in makefile
    assert "$(S3RVER)" in makefile.split("\nsetup:", 1)[1].splitlines()[0]
