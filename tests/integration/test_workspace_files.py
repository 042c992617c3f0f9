"""Files of a workspace through the service, on the real local runtime (bubblewrap sandbox).

Reads and writes are binary-safe and capped, a write replaces a file at once
and makes its folders (escapes from the workspace: tests/security/test_workspace_escape.py).
Each call is one audit row with the path and size, never the content.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from sqlmodel import Session, col, select

from envhub.config import Settings
from envhub.errors import NotFound, PermissionDenied, WorkspacePathInvalid
from envhub.models import AuditEvent, Project
from envhub.runtime.local import LocalRuntime
from envhub.services import commands, files
from tests.support.components import require
from tests.support.runtime import kill_environments
from tests.support.world import World
from tests.terminal.harness import make_environment

pytestmark = pytest.mark.slow


@pytest.fixture
def runtime(settings: Settings) -> Iterator[LocalRuntime]:
    require("bwrap")
    local = LocalRuntime(settings.envs_dir, sandbox="auto")
    yield local
    kill_environments(local)


@pytest.fixture
def env_id(session: Session, world: World, project: Project, settings: Settings) -> int:
    environment = make_environment(session, world, project, settings)
    assert environment.id is not None
    return environment.id


def sh(session: Session, world: World, runtime: LocalRuntime, env_id: int, script: str) -> str:
    result = commands.run_command(
        session=session,
        actor=world.member,
        runtime=runtime,
        environment_id=env_id,
        command=["sh", "-c", script],
        timeout=30,
        cap=65536,
    )
    assert result.end.exit_code == 0, result.output
    return result.output.decode()


def test_write_read_list_and_delete_files_in_the_workspace(
    session: Session, world: World, runtime: LocalRuntime, env_id: int
) -> None:
    actor = world.member
    ops = {"session": session, "actor": actor, "runtime": runtime, "environment_id": env_id}

    written = files.write_file(**ops, path="src/app/hello.txt", data="héllo\n".encode())
    assert written == {"path": "src/app/hello.txt", "size": 7}
    assert sh(session, world, runtime, env_id, "cat src/app/hello.txt") == "héllo\n"
    text = files.read_file(**ops, path="src/app/hello.txt")
    assert (text["content"], text["encoding"], text["size"], text["truncated"]) == (
        "héllo\n",
        "utf-8",
        7,
        False,
    )

    # Every byte value survives both ways; a capped read says where to go on from.
    binary = bytes(range(256)) * 40
    files.write_file(
        **ops, path="/workspace/bin/blob" if runtime.sandbox.kind == "bwrap" else "bin/blob", data=binary
    )
    whole = files.read_file(**ops, path="bin/blob", limit=len(binary))
    assert (whole["encoding"], base64.b64decode(whole["content"]), whole["truncated"]) == (
        "base64",
        binary,
        False,
    )
    part = files.read_file(**ops, path="bin/blob", offset=1000, limit=100)
    assert base64.b64decode(part["content"]) == binary[1000:1100]
    assert (part["size"], part["offset"], part["truncated"]) == (len(binary), 1000, True)
    assert files.read_file(**ops, path="bin/blob", offset=len(binary))["content"] == ""

    # Replacing keeps the file's mode and leaves no temporary file behind.
    files.write_file(**ops, path="run.sh", data=b"#!/bin/sh\necho one\n")
    sh(session, world, runtime, env_id, "chmod 755 run.sh")
    files.write_file(**ops, path="run.sh", data=b"#!/bin/sh\necho two\n")
    assert sh(session, world, runtime, env_id, "./run.sh") == "two\n"
    files.write_file(**ops, path="empty", data=b"")

    listing = files.list_directory(**ops, path=".")
    by_name = {entry["name"]: entry for entry in listing["entries"]}
    assert set(by_name) == {"src", "bin", "run.sh", "empty"}
    assert (by_name["src"]["type"], by_name["run.sh"]["type"], by_name["run.sh"]["size"]) == (
        "dir",
        "file",
        19,
    )
    assert by_name["empty"]["size"] == 0
    assert listing["truncated"] is False
    short = files.list_directory(**ops, path=".", max_entries=2)
    assert (len(short["entries"]), short["truncated"]) == (2, True)
    assert [e["name"] for e in files.list_directory(**ops, path="src/app")["entries"]] == ["hello.txt"]

    assert files.delete_file(**ops, path="src/app/hello.txt") == {"path": "src/app/hello.txt"}
    with pytest.raises(NotFound):
        files.read_file(**ops, path="src/app/hello.txt")
    with pytest.raises(NotFound):
        files.delete_file(**ops, path="src/app/hello.txt")
    with pytest.raises(WorkspacePathInvalid) as refused:
        files.delete_file(**ops, path="src")
    assert refused.value.details["reason"] == "is_directory"
    with pytest.raises(WorkspacePathInvalid):
        files.read_file(**ops, path="src")
    with pytest.raises(WorkspacePathInvalid):
        files.list_directory(**ops, path="run.sh")

    session.expire_all()
    rows = session.exec(
        select(AuditEvent)
        .where(AuditEvent.target_id == env_id, col(AuditEvent.action).startswith("environment.file_"))
        .order_by(col(AuditEvent.id))
    ).all()
    first = rows[0]
    assert (first.action, first.outcome, first.actor) == ("environment.file_write", "success", actor.name)
    assert first.details == {"path": "src/app/hello.txt", "size": 7}
    assert {row.action for row in rows} == {
        "environment.file_write",
        "environment.file_read",
        "environment.file_list",
        "environment.file_delete",
    }
    assert any(row.outcome == "failure" and row.error_code == "not_found" for row in rows)
    assert not any("héllo" in str(row.details) for row in rows)


def test_files_need_the_shell_right(
    session: Session, world: World, runtime: LocalRuntime, env_id: int
) -> None:
    with pytest.raises(PermissionDenied):
        files.read_file(session=session, actor=world.viewer, runtime=runtime, environment_id=env_id, path="x")
    with pytest.raises(NotFound):
        files.write_file(
            session=session, actor=world.outsider, runtime=runtime, environment_id=env_id, path="x", data=b""
        )
