"""The data folder is private (issue 9, point 5): folders 0700, files 0600.

envhub's pieces create their files the way they do in production (the
launcher's migrate, its supervisor and embedded Redis, the generated secret
key, a real environment converged by the local runtime, a terminal
recording) under a permissive umask, then every path envhub owns is checked.
An existing data folder with looser modes is tightened (and says so); one
owned by another user is refused with ``data_dir_unsafe``.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlmodel import Session

from envhub.api.terminal.recording import Recorder, recording_key
from envhub.config import PROJECT_ROOT, Settings, override_settings
from envhub.jobs.environments import converge_environment
from envhub.launcher import Supervisor, migrate, start_embedded_redis
from envhub.models import Project
from envhub.private_files import open_private, private_dir, private_file, secure_data_dir, traversable
from envhub.runtime.local import LocalRuntime
from envhub.services import ports
from envhub.services.environments import create_environment
from tests.conftest import build_settings
from tests.support.components import require
from tests.support.fakes import FakeQueue
from tests.support.runtime import kill_environments
from tests.support.world import World

pytestmark = pytest.mark.slow

NOBODY = 65534


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def loose_paths(data_dir: Path) -> list[str]:
    """Every folder not 0700 and file not 0600 in the data folder, environments' workspaces aside."""
    found = []
    if mode(data_dir) != 0o700:
        found.append(f"{data_dir} {mode(data_dir):o}")
    for folder, dirs, files in os.walk(data_dir):
        here = Path(folder)
        if here.parent == data_dir / "envs" and "workspace" in dirs:
            dirs.remove("workspace")  # the environment's own files
        for name in dirs:
            if mode(here / name) != 0o700:
                found.append(f"{here / name} {mode(here / name):o}")
        for name in files:
            if not (here / name).is_symlink() and mode(here / name) != 0o600:
                found.append(f"{here / name} {mode(here / name):o}")
    return found


@pytest.fixture(params=[0o000, 0o022], ids=["umask-000", "umask-022"])
def permissive_umask(request: pytest.FixtureRequest) -> Iterator[int]:
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def test_everything_envhub_creates_is_private(
    permissive_umask: int,
    settings: Settings,
    session: Session,
    world: World,
    project: Project,
) -> None:
    data_dir = settings.data_dir / "fresh"  # not there yet: envhub creates it
    # `make run`: the data folder, the database, the run and log folders, the embedded Redis.
    migrate(
        build_settings(
            **{
                **settings.model_dump(),
                "data_dir": data_dir,
                "database_url": f"sqlite:///{data_dir / 'envhub.db'}",
            }
        )
    )
    local = build_settings(**{**settings.model_dump(), "data_dir": data_dir})
    supervisor = Supervisor(data_dir / "run")
    supervisor.claim()
    logs = private_dir(data_dir / "logs")
    start_embedded_redis(supervisor, data_dir, env={"PATH": os.environ["PATH"]}, logs_dir=logs)
    supervisor.start("web", ["/bin/sh", "-c", "echo serving"], env={}, log_file=logs / "web.log")
    try:
        # The key generated in development; a terminal recording, as the terminal manager writes it.
        local.secret_material()
        recorder = Recorder(
            data_dir / recording_key(7, "abc123", time.time()), cols=80, rows=24, limit_bytes=10**6
        )
        recorder.output(b"$ echo hi\r\nhi\r\n")
        recorder.close()
        # An environment converged by the local runtime: envs/<id>/ with its log and state.
        assert project.id is not None
        queue = FakeQueue()
        env = create_environment(
            session=session, actor=world.member, queue=queue, project_id=project.id, name="modes"
        )
        with override_settings(local):
            ports.reset()
            runtime = ports.runtime()
            try:
                assert converge_environment(*queue.jobs[-1].args) == "ready"  # type: ignore[arg-type]
            finally:
                assert isinstance(runtime, LocalRuntime)
                kill_environments(runtime)
                ports.reset()
    finally:
        supervisor.stop()

    created = {path.relative_to(data_dir).as_posix() for path in data_dir.rglob("*")}
    expected = {
        "envhub.db",
        "secret.key",
        "run",
        "logs/redis.log",
        "logs/web.log",
        "redis/password",
        "redis/redis.conf",
        f"recordings/7/{time.strftime('%Y-%m-%d', time.gmtime())}/abc123.cast",
        f"envs/{env.id}/output.log",
        f"envs/{env.id}/state.json",
        f"envs/{env.id}/.lock",
    }
    assert expected <= created, expected - created
    assert loose_paths(data_dir) == []


def test_a_loose_data_folder_is_tightened_at_start(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    outside = tmp_path / "outside.txt"
    outside.write_text("not envhub's")
    layout = {
        "envhub.db": b"",
        "secret.key": b"k" * 64,
        "logs/web.log": b"log",
        "run/envhub.pid": b"1",
        "redis/password": b"p" * 64,
        "recordings/1/2026-01-01/s.cast": b"{}",
        "envs/3/output.log": b"out",
        "envs/3/state.json": b"{}",
        "envs/3/workspace/app.py": b"print()",
    }
    for relative, content in layout.items():
        path = data_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    for path in [data_dir, *data_dir.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    outside.chmod(0o644)
    (data_dir / "logs" / "planted.log").symlink_to(outside)

    done = run_launcher("migrate", data_dir=data_dir)

    assert done.returncode == 0, done.stderr
    assert f"tightened {data_dir} from 755 to 700" in done.stderr
    assert f"tightened {data_dir / 'secret.key'} from 644 to 600" in done.stderr
    assert loose_paths(data_dir) == []
    # The environment's own files and whatever a symlink points at are not envhub's to change.
    assert mode(data_dir / "envs/3/workspace/app.py") == 0o644
    assert mode(outside) == 0o644


def test_a_data_folder_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    require("root")
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    os.chown(data_dir, NOBODY, NOBODY)

    done = run_launcher("migrate", data_dir=data_dir)

    assert done.returncode == 2, done.stdout + done.stderr
    assert f"the data folder {data_dir} belongs to uid {NOBODY}" in done.stderr
    assert f"chown -R 0 {data_dir}" in done.stderr  # the hint: what to do next
    assert list(data_dir.iterdir()) == []  # nothing was written into it


def test_a_volume_owned_by_root_is_used_as_mounted_and_its_files_are_private() -> None:
    """Kubernetes mounts an emptyDir (or a claim with fsGroup) owned by root, mode 0777."""
    require("root")
    volume = Path(tempfile.mkdtemp(prefix="envhub-volume-"))
    try:
        volume.chmod(0o777)

        def start_as_envhub_user() -> str:
            messages: list[str] = []
            handler = logging.Handler()
            handler.emit = lambda record: messages.append(record.getMessage())  # type: ignore[method-assign]
            logging.getLogger("envhub.private_files").addHandler(handler)
            logging.getLogger("envhub.private_files").setLevel(logging.INFO)
            secure_data_dir(volume)
            private_file(volume / "envhub.db")
            private_dir(volume / "logs")
            return "\n".join(messages)

        said = as_user(NOBODY, start_as_envhub_user)
        assert f"data folder {volume} belongs to root" in said
        assert mode(volume) == 0o777  # not envhub's to change
        for name, expected in (("envhub.db", 0o600), ("logs", 0o700)):
            assert ((volume / name).stat().st_uid, mode(volume / name)) == (NOBODY, expected), name
    finally:
        shutil.rmtree(volume)


def as_user(uid: int, work: Callable[[], str]) -> str:
    """Run ``work`` in a child process with ``uid`` as its only identity; returns what it returned."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            os.write(write, work().encode())
        except BaseException as exc:
            os.write(write, f"failed: {exc!r}".encode())
            code = 1
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        output = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, output
    return output


def test_private_files_are_never_written_through_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "somebody-elses"
    target.write_text("keep")
    target.chmod(0o644)
    link = tmp_path / "output.log"
    link.symlink_to(target)
    with pytest.raises(OSError, match="Too many levels of symbolic links"):
        open_private(link, "ab")
    assert (target.read_text(), mode(target)) == ("keep", 0o644)


def test_secure_data_dir_creates_a_missing_folder_and_its_parents_private(
    permissive_umask: int, tmp_path: Path
) -> None:
    data_dir = tmp_path / "a" / "b" / "data"
    secure_data_dir(data_dir)
    for folder in (tmp_path / "a", tmp_path / "a" / "b", data_dir):
        assert mode(folder) == 0o700, folder


def run_launcher(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENVHUB_")}
    env.update(PYTHONPATH=str(PROJECT_ROOT), ENVHUB_DATA_DIR=str(data_dir), PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run(
        [sys.executable, "-m", "envhub.launcher", *args],
        cwd=data_dir.parent,  # no stray .env file
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        umask=0o022,
    )


def test_the_embedded_postgres_account_may_pass_through_and_nothing_more(tmp_path: Path) -> None:
    """As root, the embedded PostgreSQL runs as another account: the data folder and services/ stay
    0711 for it (passing, never listing), and a restart keeps them so; nothing else loosens."""
    data_dir = tmp_path / "data"
    private_dir(data_dir)
    (data_dir / "secret.key").write_bytes(b"k" * 64)
    postgres = data_dir / "services" / "postgres"
    postgres.mkdir(parents=True, mode=0o700)
    secure_data_dir(data_dir)
    assert (mode(data_dir), mode(data_dir / "services")) == (0o700, 0o700)  # nobody else's there yet

    nobody = 65534
    os.chown(postgres, nobody, nobody)
    secure_data_dir(data_dir)
    assert (mode(data_dir), mode(data_dir / "services")) == (0o711, 0o711)
    assert mode(data_dir / "secret.key") == 0o600
    assert mode(postgres) == 0o700


def test_a_restart_never_locks_the_running_postgres_out_of_its_data(tmp_path: Path) -> None:
    """The layout the embedded PostgreSQL has as root: services/postgres is envhub's, its data folder
    the server's account's. Every folder on the way stays passable (a worker starting while the
    server runs once made services/ 0700, and the server panicked: "Permission denied")."""
    data_dir = tmp_path / "data"
    private_dir(data_dir)
    postgres = data_dir / "services" / "postgres"
    traversable(postgres, up_to=data_dir)
    (postgres / "data").mkdir(mode=0o700)
    (postgres / "admin-password").write_text("x")
    os.chown(postgres / "data", 65534, 65534)
    (data_dir / "services" / "redis" / "envhub_e1_cache").mkdir(parents=True, mode=0o755)

    secure_data_dir(data_dir)
    assert [mode(path) for path in (data_dir, data_dir / "services", postgres)] == [0o711, 0o711, 0o711]
    assert mode(postgres / "data") == 0o700  # the server's own, untouched
    assert mode(postgres / "admin-password") == 0o600
    assert mode(data_dir / "services" / "redis" / "envhub_e1_cache") == 0o700  # nothing else loosens
