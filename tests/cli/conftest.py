"""The real ``envhub`` command (``.venv/bin/envhub``, installed by ``make setup``) against a running envhub.

* ``serve``: envhub's production app under Granian in its own process, on the
  test database (tests/terminal/harness.py), started as the test asks.
* ``cli``: runs the command in a subprocess with a private config folder
  (``XDG_CONFIG_HOME`` in the test's tmp_path), no keyring (so tokens go to
  the 0600 file) and no browser; the checkout under test first on its path.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlmodel import Session

from envhub.config import Settings
from envhub.models import Environment, Project
from envhub.runtime.local import LocalRuntime
from tests.support.runtime import kill_environments
from tests.support.workers import Workers
from tests.support.world import World
from tests.terminal.harness import ROOT, People, Serve, make_environment, servers

ENVHUB = Path(sys.executable).parent / "envhub"


@dataclass
class Cli:
    """How tests run the envhub command: its path and the environment it gets."""

    path: Path
    config: Path
    env: dict[str, str] = field(default_factory=dict)

    def environ(self, **extra: str) -> dict[str, str]:
        return {**self.env, **extra}

    def __call__(self, *args: str, timeout: float = 120, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.path), *args],
            env=self.environ(**extra),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    if not os.access(ENVHUB, os.X_OK):
        pytest.fail(f"the envhub command is not installed at {ENVHUB}: run `make setup`")
    config = tmp_path / "config"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENVHUB_", "KUBECONFIG"))}
    env.update(
        XDG_CONFIG_HOME=str(config),
        HOME=str(tmp_path / "home"),
        # The checkout under test, whatever checkout the virtualenv's script was installed from.
        PYTHONPATH=str(ROOT),
        PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
        ENVHUB_NO_BROWSER="1",
        TERM="xterm",
        COLUMNS="200",
    )
    return Cli(ENVHUB, config, env)


@pytest.fixture
def environment(session: Session, world: World, project: Project, settings: Settings) -> Environment:
    return make_environment(session, world, project, settings)


@pytest.fixture
def people(settings: Settings, session: Session, world: World) -> People:
    return People(settings, session, world)


@pytest.fixture
def serve(settings: Settings, tmp_path: Path) -> Iterator[Serve]:
    """``serve(**env)`` starts envhub and returns its base URL."""
    with servers(settings, tmp_path) as start:
        yield start


@pytest.fixture
def workers(settings: Settings, tmp_path: Path) -> Iterator[Workers]:
    """Real workers on the local runtime (started by the test); their environments killed after."""
    pool = Workers(settings, tmp_path)
    yield pool
    pool.stop_all()
    kill_environments(LocalRuntime(settings.envs_dir))


@pytest.fixture
def server(serve: Serve, settings: Settings) -> str:
    """envhub, putting its jobs on the queue this test's workers take them from."""
    return serve(ENVHUB_QUEUE_NAME=settings.queue_name)
