"""What the tests that run pull requests on real workers share: the workers (short reconciler
interval and stale-run time, a debounce), a git repository whose commits say which they are, and
what an environment answers through envhub's gateway."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from envhub.config import Settings, override_settings
from envhub.runtime.local import LocalRuntime
from envhub.services import ports
from tests.conftest import build_settings
from tests.support.runtime import kill_environments
from tests.support.workers import Workers

if TYPE_CHECKING:
    from tests.github.conftest import GitHub

DEBOUNCE = 1.5


@pytest.fixture
def worker_settings(settings: Settings) -> Iterator[Settings]:
    values = {
        **settings.model_dump(),
        "reconcile_interval": 0.5,
        "job_stale_after": 2.0,
        "allow_local_repos": True,
        "github_debounce_seconds": DEBOUNCE,
    }
    with override_settings(build_settings(**values)) as configured:
        ports.reset()
        yield configured
    ports.reset()


@pytest.fixture
def workers(worker_settings: Settings, tmp_path: Path) -> Iterator[Workers]:
    extra = {"ENVHUB_ALLOW_LOCAL_REPOS": "true", "ENVHUB_GITHUB_DEBOUNCE_SECONDS": str(DEBOUNCE)}
    pool = Workers(worker_settings, tmp_path, extra)
    yield pool
    pool.stop_all()
    kill_environments(LocalRuntime(worker_settings.envs_dir))


class Repository:
    """A git repository on disk whose commits say which they are."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir()
        self.git("init", "--quiet", "--initial-branch=main")

    def git(self, *args: str) -> str:
        identity = ["-c", "user.name=Codertocat", "-c", "user.email=codertocat@example.com"]
        done = subprocess.run(
            ["git", *identity, *args], cwd=self.path, check=True, capture_output=True, text=True
        )
        return done.stdout.strip()

    def commit(self, text: str) -> str:
        (self.path / "index.html").write_text(text)
        self.git("add", "index.html")
        self.git("commit", "--quiet", "-m", text)
        return self.git("rev-parse", "HEAD")


def serves(github: GitHub, host: str) -> str:
    """What the environment answers through envhub's gateway ("" while it does not)."""
    try:
        answer = github.client.get("/index.html", headers={"Host": host}, timeout=10)
    except httpx.HTTPError:
        return ""
    return answer.text if answer.status_code == 200 else ""
