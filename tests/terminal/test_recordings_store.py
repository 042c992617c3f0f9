"""Terminal recordings in the object store: uploaded when a session ends, replayed by any replica.

Real envhub web processes (tests/terminal/app.py under Granian) against a real
S3-compatible server (moto's standalone server, tests/support/s3_server.py).
The processes share the test's data folder, so a recording another process
replays after its upload can only have come from the object store: the local
file is gone by then.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session

from envhub.config import Settings
from envhub.models import AuditEvent, Environment
from tests.support.s3_server import S3Server, private_s3
from tests.support.waiting import wait_for
from tests.terminal.client import Term
from tests.terminal.harness import People, Servers, shell_events

pytestmark = pytest.mark.timeout(240)


def _ended_session(base: str, people: People, environment: Environment, marker: str) -> None:
    term = Term(base, environment.id or 0, auth=people.me(base))
    term.wait_control("hello")
    term.run(f"echo {marker}-$((6*7))", f"{marker}-42")
    term.run("exit 0", "")
    assert term.wait_control("exit")["code"] == 0
    term.wait_closed()


def _end_event(session: Session, environment: Environment) -> AuditEvent:
    def ended() -> AuditEvent | None:
        events = [e for e in shell_events(session, environment.id or 0) if e.action.endswith(".end")]
        return events[-1] if events else None

    return wait_for(ended, timeout=30, what="the session's end in the audit trail")


def _stored(server: S3Server, bucket: str, key: str) -> bytes | None:
    try:
        body: bytes = server.client().get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception:
        return None
    return body


def _output(cast: bytes) -> str:
    lines = cast.decode().splitlines()
    assert json.loads(lines[0])["version"] == 2
    return "".join(event[2] for event in map(json.loads, lines[1:]) if event[1] == "o")


def test_a_finished_recording_goes_to_the_store_and_any_replica_replays_it(
    serve: Servers,
    s3_server: S3Server,
    people: People,
    environment: Environment,
    session: Session,
    settings: Settings,
) -> None:
    bucket = s3_server.new_bucket()
    recorder, other = serve(**s3_server.environment(bucket)), serve(**s3_server.environment(bucket))

    _ended_session(recorder, people, environment, "stored")
    end = _end_event(session, environment)
    key = end.details["recording"]
    assert end.details["recording_location"] == f"s3://{bucket}/{key}"

    local = settings.data_dir / key
    wait_for(lambda: not local.exists(), timeout=30, what="the local recording to leave once uploaded")
    stored = _stored(s3_server, bucket, key)
    assert stored is not None
    assert "stored-42" in _output(stored)

    # The other process never had the file: it reads the store's copy.
    url = f"{other}/api/v1/terminal/recordings/{end.id}"
    response = httpx.get(url, headers=people.vera.headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-asciicast")
    assert response.content == stored
    assert httpx.get(url, headers=people.otto.headers).status_code == 404


def test_without_a_store_recordings_stay_in_the_data_folder(
    serve: Servers, people: People, environment: Environment, session: Session, settings: Settings
) -> None:
    base = serve()
    _ended_session(base, people, environment, "local")
    end = _end_event(session, environment)
    assert "recording_location" not in end.details
    time.sleep(1)
    assert "local-42" in _output((settings.data_dir / end.details["recording"]).read_bytes())


def test_while_the_store_is_down_the_recording_stays_local_and_its_upload_is_retried(
    serve: Servers,
    people: People,
    environment: Environment,
    session: Session,
    settings: Settings,
    tmp_path: Path,
) -> None:
    folder = tmp_path / "s3"
    folder.mkdir()
    with private_s3(folder) as store:
        bucket = store.new_bucket()
        base = serve(**store.environment(bucket))
        store.stop()  # the object store goes away before the session ends

        _ended_session(base, people, environment, "retried")
        end = _end_event(session, environment)
        key = end.details["recording"]
        assert end.details["recording_location"] == f"s3://{bucket}/{key}"
        local = settings.data_dir / key
        time.sleep(4)  # a few attempts fail meanwhile
        assert local.is_file()
        kept = local.read_bytes()
        assert "retried-42" in _output(kept)
        # The audit trail replays it from the data folder meanwhile.
        response = httpx.get(f"{base}/api/v1/terminal/recordings/{end.id}", headers=people.vera.headers)
        assert response.status_code == 200
        assert response.content == kept

        store.start()  # back, on the same address (empty: the operator's bucket is made again)
        store.new_bucket(bucket)
        wait_for(lambda: not local.exists(), timeout=90, what="the retried upload")
        assert _stored(store, bucket, key) == kept
