"""Buckets end to end on the embedded default: a real s3rver per environment, the local runtime.

A project declares a bucket; the environment job makes an s3rver for the
environment and a key pair, and an app inside the sandbox writes and reads
objects through the injected S3_ENDPOINT/AWS_* variables (relayed from
127.0.0.1:9000 to the server's socket). The sandbox has no boto3: the app
signs its requests itself (Signature Version 4, standard library only), as
any S3 client would. One environment's pair opens nothing of another's;
rotation retires the old pair; deleting the environment removes the bucket.
"""

from __future__ import annotations

import re
from pathlib import Path

import psutil
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from envhub import launcher
from envhub.config import Settings
from envhub.integrations.aws import s3_client
from envhub.integrations.backing.base import instance_name
from envhub.integrations.backing.embedded_buckets import EmbeddedBuckets
from envhub.models import InstanceState, Project, ServiceInstance
from envhub.services import backing, ports
from envhub.services.environments import create_environment, delete_environment, redeploy_environment
from envhub.services.projects import update_project
from tests.integration.test_managed_services import _inside, _run
from tests.support.components import require
from tests.support.db import fetch_all
from tests.support.fakes import FakeQueue
from tests.support.world import World

# `python3 s3.py put KEY BODY` / `get KEY`: prints the status and the body of one signed request.
_S3PY = r"""
import datetime, hashlib, hmac, os, sys, urllib.error, urllib.parse, urllib.request
endpoint, bucket = os.environ["S3_ENDPOINT"], os.environ["S3_BUCKET"]
key_id, secret = os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
region = os.environ["AWS_REGION"]
method, key = {"put": "PUT", "get": "GET"}[sys.argv[1]], sys.argv[2]
body = sys.argv[3].encode() if method == "PUT" else b""
path = "/" + bucket + "/" + urllib.parse.quote(key, safe="/~")
stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
payload = hashlib.sha256(body).hexdigest()
host = urllib.parse.urlsplit(endpoint).netloc
headers = {"host": host, "x-amz-content-sha256": payload, "x-amz-date": stamp}
names = ";".join(sorted(headers))
lines = "".join(f"{n}:{headers[n]}\n" for n in sorted(headers))
canonical = "\n".join([method, path, "", lines, names, payload])
scope = f"{stamp[:8]}/{region}/s3/aws4_request"
to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
signing = ("AWS4" + secret).encode()
for part in (stamp[:8], region, "s3", "aws4_request"):
    signing = hmac.new(signing, part.encode(), hashlib.sha256).digest()
signature = hmac.new(signing, to_sign.encode(), hashlib.sha256).hexdigest()
headers["authorization"] = (
    f"AWS4-HMAC-SHA256 Credential={key_id}/{scope}, SignedHeaders={names}, Signature={signature}"
)
request = urllib.request.Request(endpoint + path, data=body or None, method=method, headers=headers)
try:
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=10) as answer:
        print(answer.status, answer.read().decode())
except urllib.error.HTTPError as refused:
    print(refused.code, refused.read().decode())
"""

# At each start: the script goes into the workspace, one object is written and read back, then it serves.
_APP = (
    'printf %s "$S3PY" > s3.py; '
    'python3 s3.py put hello.txt "hello from $S3_BUCKET" > s3.out 2>&1; '
    "python3 s3.py get hello.txt >> s3.out 2>&1; "
    "env | grep -E '^(S3_|AWS_)' | sort > vars.out; "
    "exec python3 -m http.server $PORT"
)


@pytest.fixture
def with_bucket(session: Session, world: World, project: Project, short_settings: Settings) -> Project:
    require("s3rver")
    assert project.id is not None
    return update_project(
        session=session,
        actor=world.owner,
        project_id=project.id,
        changes={"backing": [{"name": "files", "kind": "bucket"}]},
    )


def _create(session: Session, world: World, project: Project, queue: FakeQueue, name: str) -> int:
    assert project.id is not None
    created = create_environment(
        session=session,
        actor=world.member,
        queue=queue,
        project_id=project.id,
        name=name,
        overrides={"command": _APP, "env": {"S3PY": _S3PY}},
    )
    assert created.id is not None
    assert _run(queue) == "ready"
    return created.id


def _variables(environment_id: int) -> dict[str, str]:
    """The S3_*/AWS_* variables the app was started with."""
    lines = _inside(environment_id, "cat vars.out")[1].splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def _s3(environment_id: int, args: str, env: dict[str, str] | None = None) -> str:
    """Run the app's client inside the environment with the app's variables, some replaced by ``env``
    (a shell in a local environment gets envhub's variables only, not the services')."""
    given = {**_variables(environment_id), **(env or {})}
    assignments = " ".join(f"{name}='{value}'" for name, value in given.items())
    code, out = _inside(environment_id, f"{assignments} python3 s3.py {args}")
    assert code == 0, out
    return out.strip()


def _refused(out: str) -> tuple[str, str]:
    """(status, S3 error code) of a refusal the client printed."""
    found = re.search(r"<Code>([^<]+)</Code>", out)
    return out.split(" ", 1)[0], found.group(1) if found else out


def test_an_app_writes_and_reads_objects_through_the_injected_variables(
    session: Session, world: World, with_bucket: Project
) -> None:
    queue = FakeQueue()
    env_id = _create(session, world, with_bucket, queue, "pr-1")
    [row] = backing.environment_services(session=session, actor=world.member, environment_id=env_id)
    assert (row["name"], row["state"], row["backend"]) == ("files", "ready", "embedded")
    bucket = instance_name(env_id, "files").replace("_", "-")
    variables = _variables(env_id)
    assert variables["S3_ENDPOINT"] == "http://127.0.0.1:9000"
    assert variables["S3_BUCKET"] == bucket
    assert variables["AWS_REGION"] == "us-east-1"
    assert len(variables["AWS_SECRET_ACCESS_KEY"]) >= 40
    assert _inside(env_id, "cat s3.out")[1].splitlines() == ["200 ", f"200 hello from {bucket}"]

    # The object is in the instance's server, as envhub's backend sees it from the host.
    store = ports.backing().buckets
    assert isinstance(store, EmbeddedBuckets)
    access = store.ensure(instance_name(env_id, "files"))
    host = s3_client(
        endpoint_url=access.endpoint_url,
        region=access.region,
        access_key_id=variables["AWS_ACCESS_KEY_ID"],
        secret_access_key=variables["AWS_SECRET_ACCESS_KEY"],
        unix_socket=access.unix_socket,
    )
    assert host.get_object(Bucket=bucket, Key="hello.txt")["Body"].read() == f"hello from {bucket}".encode()
    # Nothing of the key pair reaches the audit trail or the service's page.
    assert variables["AWS_SECRET_ACCESS_KEY"] not in str(row)


def test_one_environments_pair_opens_nothing_of_anothers_and_rotation_retires_it(
    session: Session, world: World, with_bucket: Project
) -> None:
    queue = FakeQueue()
    first = _create(session, world, with_bucket, queue, "pr-1")
    second = _create(session, world, with_bucket, queue, "pr-2")
    theirs = _variables(first)
    # pr-1's pair and bucket name, from inside pr-2: its 127.0.0.1:9000 is pr-2's own server.
    out = _s3(second, "get hello.txt", env={k: v for k, v in theirs.items() if k != "S3_ENDPOINT"})
    assert _refused(out) == ("403", "InvalidAccessKeyId")
    # pr-2's own pair on pr-1's bucket name: not its bucket.
    out = _s3(second, "get hello.txt", env={"S3_BUCKET": theirs["S3_BUCKET"]})
    assert _refused(out) == ("403", "AccessDenied")

    backing.rotate_service_credentials(
        session=session, actor=world.member, queue=queue, environment_id=first, service="files"
    )
    assert _run(queue) == "ready"
    rotated = _variables(first)
    assert rotated["AWS_ACCESS_KEY_ID"] != theirs["AWS_ACCESS_KEY_ID"]
    # The app wrote and read again with the new pair, on the same data.
    assert _s3(first, "get hello.txt") == f"200 hello from {theirs['S3_BUCKET']}"
    assert _refused(_s3(first, "get hello.txt", env=theirs)) == ("403", "InvalidAccessKeyId")


def test_deleting_the_environment_removes_its_bucket(
    session: Session, world: World, with_bucket: Project, db: Engine
) -> None:
    queue = FakeQueue()
    env_id = _create(session, world, with_bucket, queue, "pr-1")
    store = ports.backing().buckets
    assert isinstance(store, EmbeddedBuckets)
    name = instance_name(env_id, "files")
    assert store.names() == {name}
    home = store.home(name)
    assert (home / "data").is_dir()

    delete_environment(session=session, actor=world.member, queue=queue, environment_id=env_id)
    assert _run(queue) == "deleted"
    assert store.names() == set()
    assert not Path(home).exists()
    [row] = fetch_all(db, ServiceInstance)
    assert (row.service, row.state, row.credential) == ("files", InstanceState.removed, "")


def test_envhub_stops_its_bucket_servers_when_it_stops_and_they_start_again_with_it(
    session: Session, world: World, with_bucket: Project, short_settings: Settings
) -> None:
    queue = FakeQueue()
    env_id = _create(session, world, with_bucket, queue, "pr-1")
    store = ports.backing().buckets
    assert isinstance(store, EmbeddedBuckets)
    name = instance_name(env_id, "files")
    server = psutil.Process(int((store.home(name) / "s3.pid").read_text()))
    pair = _variables(env_id)

    launcher._stop_managed_services(short_settings)  # what `make run` does on its way out
    assert not server.is_running() or server.status() == psutil.STATUS_ZOMBIE
    assert store.names() == {name}  # the data stays

    # The next deploy starts it again, on the same data and the same pair.
    session.expire_all()  # the job ran in a session of its own
    redeploy_environment(session=session, actor=world.member, queue=queue, environment_id=env_id)
    assert _run(queue) == "ready"
    assert int((store.home(name) / "s3.pid").read_text()) != server.pid
    assert _variables(env_id) == pair
    assert _s3(env_id, "get hello.txt") == f"200 hello from {pair['S3_BUCKET']}"
