"""Helpers for driving runtimes directly: targets, a progress recorder, process trees, git repos."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from envhub.domain.specs import EnvironmentTarget, parse_spec
from envhub.runtime.base import Endpoint
from envhub.runtime.local import LocalRuntime, cgroups
from envhub.runtime.local.processes import find_process, read_state


def make_target(
    environment_id: int = 1, *, generation: int = 1, name: str = "dev", **spec: Any
) -> EnvironmentTarget:
    return EnvironmentTarget(
        id=environment_id,
        name=name,
        project="shop",
        team="acme",
        generation=generation,
        spec=parse_spec(spec),
    )


@dataclass
class RecordingProgress:
    """A :class:`envhub.runtime.base.ProgressReporter` that remembers what it was told."""

    events: list[tuple[str, str, str]] = field(default_factory=list)
    heartbeats: int = 0

    def begin(self, key: str, detail: str = "") -> None:
        self.events.append(("begin", key, detail))

    def finish(self, key: str, detail: str = "") -> None:
        self.events.append(("finish", key, detail))

    def skip(self, key: str, detail: str = "") -> None:
        self.events.append(("skip", key, detail))

    def heartbeat(self) -> None:
        self.heartbeats += 1

    def outcome(self, key: str) -> str | None:
        """The last thing reported for a step: begin, finish or skip."""
        last = [event for event, k, _ in self.events if k == key]
        return last[-1] if last else None


def endpoint_get(endpoint: Endpoint, path: str = "/", *, timeout: float = 10) -> httpx.Response:
    """``GET path`` where envhub reaches the environment (its private UNIX socket, or host:port)."""
    transport = httpx.HTTPTransport(uds=endpoint.unix_socket) if endpoint.unix_socket else None
    with httpx.Client(transport=transport, timeout=timeout) as client:
        return client.get(f"http://{endpoint.host}:{endpoint.port}{path}")


def recorded_pid(env_dir: Path) -> int:
    return int(json.loads((env_dir / "state.json").read_text())["pid"])


def process_tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def is_gone(proc: psutil.Process) -> bool:
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def kill_environments(runtime: LocalRuntime) -> None:
    """Test teardown: SIGKILL every environment's process tree without waiting for it to be
    reaped, then remove its cgroups (``cgroups.py``) as soon as the kernel lets go of them.

    ``LocalRuntime.stop`` waits until each process is reaped, which on machines
    whose init reaps orphans slowly takes seconds; teardown needs no such proof.
    """
    placements = []
    for environment_id in runtime.managed_environments():
        state = read_state(runtime.workspace_path(environment_id).parent / "state.json")
        if state is not None and state.cgroup_cpu and state.cgroup_memory:
            placements.append(cgroups.Placement(state.cgroup_cpu, state.cgroup_memory))
        root = find_process(state)
        if root is None:
            continue
        with contextlib.suppress(psutil.Error):
            family = [root, *root.children(recursive=True)]
            for proc in family:
                with contextlib.suppress(psutil.Error):
                    proc.kill()
    # Their cgroups go too, once the kernel has seen the processes end: none is left on the machine.
    deadline = time.monotonic() + 10
    while placements and time.monotonic() < deadline:
        placements = [p for p in placements if not cgroups.remove(p)]
        time.sleep(0.02 if placements else 0)


def git(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=envhub tests", "-c", "user.email=tests@envhub.invalid", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


@dataclass(frozen=True)
class GitRepo:
    path: Path
    first_commit: str
    main_commit: str
    feature_commit: str

    @property
    def url(self) -> str:
        return self.path.as_uri()


def make_git_repo(path: Path) -> GitRepo:
    """``main`` with two commits (VERSION one, then two) and a ``feature`` branch."""
    path.mkdir(parents=True)
    git("init", "--quiet", "--initial-branch=main", cwd=path)
    (path / "VERSION").write_text("one\n")
    git("add", "VERSION", cwd=path)
    git("commit", "--quiet", "-m", "first", cwd=path)
    first = git("rev-parse", "HEAD", cwd=path)
    git("checkout", "--quiet", "-b", "feature", cwd=path)
    (path / "VERSION").write_text("feature\n")
    git("commit", "--quiet", "-am", "feature work", cwd=path)
    feature = git("rev-parse", "HEAD", cwd=path)
    git("checkout", "--quiet", "main", cwd=path)
    (path / "VERSION").write_text("two\n")
    git("commit", "--quiet", "-am", "second", cwd=path)
    main = git("rev-parse", "HEAD", cwd=path)
    return GitRepo(path=path, first_commit=first, main_commit=main, feature_commit=feature)
