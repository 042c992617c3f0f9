"""Attack: an environment reads envhub's secret key, its database or its code.

envhub's data folder and install folder are put where a sandbox's system
mounts would show them (under /usr/local/share, as an install under /usr/local
or /opt would be). From inside an environment, through its command and through
a terminal shell, reading the secret key, the SQLite database, the recordings,
the install folder and the virtualenv fails, as do /etc's owner-only files
(when envhub runs as root, the sandbox's processes are root to the kernel's
file checks); the workspace is readable and writable. A world-readable file
right beside envhub's folders *is* readable, and a sandbox that is not told
to hide envhub's folders *does* read the key: the failures come from the
boundary, not from a path that was never there.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sqlite3
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from envhub.config import PROJECT_ROOT
from envhub.runtime import get_runtime
from envhub.runtime.local import LocalRuntime
from tests.conftest import build_settings
from tests.support.components import require
from tests.support.inside import probe_command, probe_in_shell, probe_result
from tests.support.runtime import RecordingProgress, kill_environments, make_target

pytestmark = pytest.mark.slow

SYSTEM_FOLDER = Path("/usr/local/share")


@dataclass
class Install:
    data: Path
    install: Path
    neighbour: Path
    key: str


@pytest.fixture
def install() -> Iterator[Install]:
    """envhub's folders under a system folder every sandbox mounts read-only."""
    require("root")
    require("bwrap")
    assert os.access(SYSTEM_FOLDER, os.W_OK), (
        f"this test places envhub's folders in {SYSTEM_FOLDER} (where a sandbox's system mounts would "
        "show them) and needs to write there: run it as root, as CI does"
    )
    base = SYSTEM_FOLDER / f"envhub-test-{secrets.token_hex(4)}"
    neighbour = base.with_name(base.name + "-neighbour.txt")
    try:
        data, installed = base / "var", base / "envhub"
        (data / "recordings").mkdir(parents=True)
        (installed / "envhub").mkdir(parents=True)
        key = secrets.token_urlsafe(24)
        (data / "secret.key").write_text(key)
        os.chmod(data / "secret.key", 0o644)  # even world-readable, it must not be visible
        with sqlite3.connect(data / "envhub.db") as db:
            db.execute("CREATE TABLE t (secret TEXT)")
        (data / "recordings" / "1.cast").write_text("{}")
        (installed / "envhub" / "config.py").write_text("SECRET = 'install'\n")
        neighbour.write_text("anyone may read this")
        os.chmod(base, 0o755)
        yield Install(data=data, install=installed, neighbour=neighbour, key=key)
    finally:
        shutil.rmtree(base, ignore_errors=True)
        neighbour.unlink(missing_ok=True)


def _plan(install: Install) -> dict[str, object]:
    return {
        "read": {
            "secret-key": str(install.data / "secret.key"),
            "database": str(install.data / "envhub.db"),
            "recording": str(install.data / "recordings" / "1.cast"),
            "install": str(install.install / "envhub" / "config.py"),
            "checkout": str(PROJECT_ROOT / "envhub" / "config.py"),
            "virtualenv": str(Path(sys.prefix) / "pyvenv.cfg"),
            "shadow": "/etc/shadow",
            "neighbour": str(install.neighbour),
            "workspace-seed": "/workspace/seed.txt",
        },
        "list": {"data-folder": str(install.data), "opt": "/opt", "ssl-private": "/etc/ssl/private"},
        "write": {"workspace": "/workspace/from-inside.txt"},
    }


READABLE = {"neighbour", "workspace-seed", "workspace"}


def _check(seen: dict[str, str], install: Install) -> None:
    assert seen["neighbour"] == "read: b'anyone may read this'"  # /usr is mounted
    assert seen["workspace-seed"] == "read: b'seeded by the host'"
    assert seen["workspace"] == "wrote"
    leaks = {name: result for name, result in seen.items() if name not in READABLE and "failed" not in result}
    assert leaks == {}, f"read from inside the environment: {leaks}"
    assert install.key not in str(seen)


def test_an_environment_cannot_read_envhub_s_own_files(
    install: Install, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As envhub wires it from its settings, with the install folder where the checkout would be.
    monkeypatch.setattr("envhub.runtime.local.runtime.PROJECT_ROOT", install.install)
    settings = build_settings(data_dir=install.data, database_url=f"sqlite:///{install.data / 'envhub.db'}")
    runtime = get_runtime(settings)
    assert isinstance(runtime, LocalRuntime)
    assert runtime.workspace_path(1).is_relative_to(install.data)
    try:
        runtime.workspace_path(1).mkdir(parents=True)
        (runtime.workspace_path(1) / "seed.txt").write_text("seeded by the host")
        command, env = probe_command(_plan(install))
        runtime.apply(make_target(1, command=command, env=env), progress=RecordingProgress())

        _check(probe_result(runtime, 1), install)
        _check(probe_in_shell(runtime, 1, _plan(install)), install)
        assert (runtime.workspace_path(1) / "from-inside.txt").read_text() == "written inside"
    finally:
        kill_environments(runtime)


def test_the_same_read_succeeds_when_the_sandbox_is_not_told_to_hide_them(install: Install) -> None:
    # The control: proves the reads above fail because envhub's folders are hidden.
    runtime = LocalRuntime(install.data / "envs", private_paths=(), health_timeout=30)
    try:
        command, env = probe_command({"read": {"secret-key": str(install.data / "secret.key")}})
        runtime.apply(make_target(1, command=command, env=env), progress=RecordingProgress())
        assert probe_result(runtime, 1)["secret-key"] == f"read: {install.key.encode()[:40]!r}"
    finally:
        kill_environments(runtime)


ESCAPE = """
grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status > escape.txt
mount -o remount,bind,rw /usr >> escape.txt 2>&1 && echo remounted >> escape.txt
unshare -Urm sh -c 'mount -o remount,bind,rw /usr && echo nested-remounted' >> escape.txt 2>&1
touch /usr/MARK >> escape.txt 2>&1 && echo wrote-usr >> escape.txt
touch /etc/MARK >> escape.txt 2>&1 && echo wrote-etc >> escape.txt
exec python3 -m http.server $PORT
"""


def test_the_read_only_system_cannot_be_made_writable_from_inside(tmp_path: Path) -> None:
    # As root, a sandbox that kept its capabilities could remount /usr read-write
    # and write to the host's /usr: bubblewrap must drop them all.
    mark = f"envhub-escape-{secrets.token_hex(4)}"
    runtime = LocalRuntime(tmp_path / "envs", health_timeout=30)
    try:
        runtime.apply(make_target(1, command=ESCAPE.replace("MARK", mark)), progress=RecordingProgress())
        seen = (runtime.workspace_path(1) / "escape.txt").read_text()
        assert "CapEff:\t0000000000000000" in seen
        assert "CapBnd:\t0000000000000000" in seen
        assert "NoNewPrivs:\t1" in seen
        for done in ("remounted", "nested-remounted", "wrote-usr", "wrote-etc"):
            assert done not in seen.split(), seen
        assert not (Path("/usr") / mark).exists()
        assert not (Path("/etc") / mark).exists()
    finally:
        kill_environments(runtime)
        (Path("/usr") / mark).unlink(missing_ok=True)
        (Path("/etc") / mark).unlink(missing_ok=True)
