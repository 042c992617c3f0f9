"""The launcher's pieces that run without building the dashboard."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from envhub.config import PROJECT_ROOT
from envhub.errors import ConfigurationError
from envhub.launcher import Supervisor, _redact, main, redis_binary
from tests.conftest import scrub_envhub_environment
from tests.support.waiting import wait_for


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "600"])
    yield proc
    proc.kill()
    proc.wait()


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_claim_writes_our_pid(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path / "run")
    supervisor.claim()
    assert supervisor.pid_file.read_text() == str(os.getpid())


@pytest.mark.parametrize("content", ["stale", "garbage", ""])
def test_claim_replaces_a_stale_or_broken_pid_file(tmp_path: Path, content: str) -> None:
    supervisor = Supervisor(tmp_path / "run")
    supervisor.run_dir.mkdir()
    supervisor.pid_file.write_text(str(dead_pid()) if content == "stale" else content)
    supervisor.claim()
    assert supervisor.pid_file.read_text() == str(os.getpid())


def test_claim_refuses_while_another_envhub_is_alive(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    supervisor = Supervisor(tmp_path / "run")
    supervisor.run_dir.mkdir()
    supervisor.pid_file.write_text(f"{sleeper.pid}\n")
    with pytest.raises(ConfigurationError) as caught:
        supervisor.claim()
    assert f"already running (pid {sleeper.pid})" in caught.value.message
    assert str(supervisor.pid_file) in caught.value.hint
    assert supervisor.pid_file.read_text() == f"{sleeper.pid}\n"


def test_stop_ends_every_child_and_its_process_group(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path / "run")
    supervisor.claim()
    child = supervisor.start(
        "sleepy", ["/bin/sh", "-c", "sleep 600 & sleep 600 & wait"], env={"PATH": "/usr/bin:/bin"}
    )
    family = wait_for(
        lambda: (
            (kids := psutil.Process(child.pid).children())
            and len(kids) == 2
            and [child.pid, *(k.pid for k in kids)]
        ),
        what="the child's own children",
    )
    supervisor.stop()
    assert child.poll() is not None
    wait_for(
        lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in family),
        what="the whole group to stop",
    )
    assert not supervisor.pid_file.exists()
    assert supervisor.children == []


def test_redis_binary_is_found() -> None:
    binary = Path(redis_binary())
    assert binary.is_file()
    assert os.access(binary, os.X_OK)


def test_redact_hides_credentials() -> None:
    assert _redact("postgresql+psycopg://user:pw@db:5432/envhub") == "postgresql+psycopg://***@db:5432/envhub"
    assert _redact("sqlite:////var/envhub.db") == "sqlite:////var/envhub.db"


def _launcher(*args: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ENVHUB_")}
    return subprocess.run(
        [sys.executable, "-m", "envhub.launcher", *args],
        cwd=tmp_path,
        env={**clean, "PYTHONPATH": str(PROJECT_ROOT), "ENVHUB_DATA_DIR": str(tmp_path / "data"), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_an_invalid_setting_names_the_variable_and_exits_2(tmp_path: Path) -> None:
    done = _launcher("migrate", tmp_path=tmp_path, ENVHUB_PAGE_SIZE="abc")
    assert done.returncode == 2
    assert "ENVHUB_PAGE_SIZE" in done.stderr
    assert "Fix the named ENVHUB_* variable" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "data" / "envhub.db").exists()


def test_migrate_creates_the_database(tmp_path: Path) -> None:
    done = _launcher("migrate", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "database is up to date" in done.stdout
    assert (tmp_path / "data" / "envhub.db").is_file()


def test_run_refuses_a_public_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    scrub_envhub_environment(monkeypatch)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ENVHUB_DATA_DIR", str(tmp_path / "data"))
    assert main(["run", "--host", "0.0.0.0"]) == 2
    assert "refusing to listen on 0.0.0.0" in capsys.readouterr().err
    assert not (tmp_path / "data" / "run").exists()  # nothing was started


def test_run_refuses_a_busy_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    scrub_envhub_environment(monkeypatch)
    monkeypatch.chdir(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        monkeypatch.setenv("ENVHUB_DATA_DIR", str(tmp_path / "data"))
        monkeypatch.setenv("ENVHUB_BASE_URL", f"http://localhost:{port}")
        assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert f"ENVHUB_BASE_URL: port {port} is already in use" in err
