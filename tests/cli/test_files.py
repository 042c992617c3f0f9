"""``envhub files ls|cat|put|rm`` and the REST routes under them (``/api/v1/environments/{id}/files``)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
from sqlmodel import col, select

from envhub.config import Settings
from envhub.models import AuditEvent, Environment
from tests.cli.conftest import Cli
from tests.cli.test_exec import token_env
from tests.terminal.harness import People, Serve


def test_files_put_ls_cat_and_rm(
    cli: Cli, serve: Serve, people: People, environment: Environment, tmp_path: Path, settings: Settings
) -> None:
    env = token_env(people, serve())
    eid = str(environment.id)
    local = tmp_path / "page.html"
    local.write_text("<h1>from the cli</h1>\n")
    put = cli("files", "put", eid, str(local), "site/index.html", **env)
    assert put.returncode == 0, put.stderr
    assert "Wrote site/index.html (22 bytes)" in put.stdout
    workspace = settings.envs_dir / eid / "workspace"
    assert (workspace / "site" / "index.html").read_text() == "<h1>from the cli</h1>\n"

    listed = cli("files", "ls", eid, "site", "-o", "json", **env)
    assert listed.returncode == 0, listed.stderr
    assert [(e["name"], e["type"], e["size"]) for e in json.loads(listed.stdout)["entries"]] == [
        ("index.html", "file", 22)
    ]
    assert "site/" in cli("files", "ls", eid, **env).stdout

    shown = cli("files", "cat", eid, "site/index.html", **env)
    assert (shown.returncode, shown.stdout) == (0, "<h1>from the cli</h1>\n")

    removed = cli("files", "rm", eid, "site/index.html", **env)
    assert removed.returncode == 0, removed.stderr
    assert not (workspace / "site" / "index.html").exists()
    gone = cli("files", "cat", eid, "site/index.html", "-o", "json", **env)
    assert gone.returncode == 5
    assert json.loads(gone.stderr)["error"]["code"] == "not_found"
    outside = cli("files", "cat", eid, "../state.json", "-o", "json", **env)
    assert outside.returncode == 7
    assert json.loads(outside.stderr)["error"]["code"] == "workspace_path_invalid"


def test_the_file_routes_are_binary_safe_confined_and_a_shell_right(
    serve: Serve, people: People, environment: Environment
) -> None:
    base = serve()
    url = f"{base}/api/v1/environments/{environment.id}/files"
    headers = people.token(people.world.member, ("read", "shell")).headers
    blob = bytes(range(256)) * 8
    written = httpx.put(f"{url}/content", params={"path": "data/blob.bin"}, content=blob, headers=headers)
    assert written.status_code == 200, written.text
    assert written.json() == {"path": "data/blob.bin", "size": len(blob)}
    read = httpx.get(f"{url}/content", params={"path": "data/blob.bin", "max_bytes": 1000}, headers=headers)
    body = read.json()
    assert (body["encoding"], body["size"], body["truncated"]) == ("base64", len(blob), True)
    assert base64.b64decode(body["content"]) == blob[:1000]

    for params in ({"path": "../x"}, {"path": ""}, {"path": "a", "max_bytes": 0}):
        refused = httpx.get(f"{url}/content", params=params, headers=headers)
        assert refused.status_code == 422, refused.text
        assert refused.json()["code"] in ("validation_failed", "workspace_path_invalid")
    escaped = httpx.get(f"{url}/content", params={"path": "/etc/passwd"}, headers=headers)
    assert (escaped.status_code, escaped.json()["details"]["reason"]) == (422, "escapes")

    read_only = people.token(people.world.member, ("read",)).headers
    denied = httpx.put(f"{url}/content", params={"path": "x"}, content=b"x", headers=read_only)
    assert (denied.status_code, denied.json()["code"]) == (403, "forbidden")
    viewer = people.token(people.world.viewer, ("read", "shell")).headers
    assert httpx.get(url, headers=viewer).status_code == 403
    assert (
        httpx.delete(f"{url}/content", params={"path": "data/blob.bin"}, headers=headers).status_code == 200
    )

    session = people.session
    session.expire_all()
    events = session.exec(
        select(AuditEvent)
        .where(col(AuditEvent.action).startswith("environment.file_"))
        .order_by(col(AuditEvent.id))
    ).all()
    assert [(e.action, e.outcome, e.details.get("path"), e.details.get("size")) for e in events][:2] == [
        ("environment.file_write", "success", "data/blob.bin", len(blob)),
        ("environment.file_read", "success", "data/blob.bin", len(blob)),
    ]
