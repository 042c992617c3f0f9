"""services/usage.py with a real process tree: CPU and memory per container from its cgroup (or,
where it has none, from its process tree, saying so), a ring of readings for the plot, and a clear
answer (never zeros) where nothing can be measured."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import Session

from envhub.config import PROJECT_ROOT, Settings
from envhub.models import Project
from envhub.runtime.base import Usage
from envhub.runtime.local import LocalRuntime, cgroups
from envhub.runtime.local.processes import read_state, write_state
from envhub.services import usage
from envhub.services.environments import create_environment
from envhub.services.usage import environment_usage
from tests.support.components import require
from tests.support.fakes import FakeQueue
from tests.support.runtime import RecordingProgress, kill_environments, make_target
from tests.support.world import World

# A step that held 128 MiB and exited, then what holds 64 MiB and keeps one core busy, while
# serving $PORT.
BUSY = (
    "python3 -c 'held = bytearray(128 << 20)\n"
    "for i in range(0, len(held), 4096): held[i] = 1' && "
    "python3 -c 'import http.server, os, threading\n"
    "held = bytearray(64 << 20)\n"
    "for i in range(0, len(held), 4096): held[i] = 1\n"
    "def spin():\n"
    "    while True: pass\n"
    "threading.Thread(target=spin, daemon=True).start()\n"
    'http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), '
    "http.server.SimpleHTTPRequestHandler).serve_forever()'"
)


@pytest.fixture
def runtime(settings: Settings) -> Iterator[LocalRuntime]:
    require("bwrap")
    rt = LocalRuntime(settings.envs_dir, sandbox="auto", health_timeout=30, allow_local_repos=True)
    yield rt
    kill_environments(rt)


def _env(session: Session, world: World, project: Project) -> int:
    assert project.id is not None
    env = create_environment(
        session=session, actor=world.member, queue=FakeQueue(), project_id=project.id, name="busy"
    )
    assert env.id is not None
    usage.forget(env.id)
    return env.id


def test_a_busy_process_trees_cpu_and_memory_are_read_into_a_ring(
    session: Session, world: World, project: Project, runtime: LocalRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_id = _env(session, world, project)
    runtime.apply(make_target(env_id, command=BUSY), progress=RecordingProgress())
    monkeypatch.setattr(usage, "SAMPLE_EVERY", 0.0)  # every call reads, for the ring below

    views = [
        environment_usage(session=session, actor=world.viewer, runtime=runtime, environment_id=env_id)
        for _ in range(3)
    ]
    last = views[-1]
    assert last["available"], last["note"]
    # This machine (root, cgroups v1 and v2 mounted) gives each environment a cgroup of its own.
    assert last["source"].startswith("cgroup v"), last["source_note"]
    assert last["source_note"] == ""
    [row] = last["rows"]
    assert row["container"] == "main"
    assert row["memory_bytes"] >= 64 << 20  # what it holds, resident
    # The step that exited is still counted: the cgroup's peak saw its 128 MiB.
    assert float(row["memory_peak"].removesuffix("Mi") or 0) >= 128
    assert row["cpu_millicores"] > 0  # a core kept busy shows; the figure depends on the machine
    assert row["cpu"].endswith("m")
    [series] = last["series"]
    assert len(series["points"]) == 3  # one per reading, oldest first
    assert all(point["memory"] >= 64 for point in series["points"])

    # A tree that runs in no cgroup (envhub could not make one: not root, no delegated cgroup) is
    # measured by its processes, and the answer says so and why: never a silent fallback.
    state_path = runtime.workspace_path(env_id).parent / "state.json"
    state = read_state(state_path)
    assert state is not None
    cgroup = cgroups.Placement(state.cgroup_cpu, state.cgroup_memory)
    why = "envhub cannot create a cgroup in /sys/fs/cgroup/x (Permission denied)"
    write_state(state_path, dataclasses.replace(state, cgroup_cpu="", cgroup_memory="", cgroup_note=why))
    try:
        usage.forget(env_id)
        tree = environment_usage(session=session, actor=world.viewer, runtime=runtime, environment_id=env_id)
    finally:
        write_state(state_path, state)  # so the teardown finds its cgroups
    assert tree["source"] == "process tree (psutil)"
    assert tree["source_note"].startswith(f"No cgroup for this environment: {why}.")
    [row] = tree["rows"]
    assert row["memory_bytes"] >= 64 << 20
    assert row["memory_peak"] == ""  # a process tree has no peak to tell
    assert cgroups.read(cgroup).memory_bytes > 0


def test_an_unprivileged_envhub_is_told_why_it_gets_no_cgroup(tmp_path: Path) -> None:
    # As nobody, outside any cgroup delegated to it, the kernel refuses envhub a cgroup: the reason
    # is what the state records and usage shows (above).
    program = "import sys; from pathlib import Path; from envhub.runtime.local import cgroups; "
    program += "print(cgroups.place(Path(sys.argv[1]), 7))"
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
    done = subprocess.run(
        [*nobody, sys.executable, "-c", program, str(tmp_path / "envs")],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.startswith("envhub cannot create a cgroup in /sys/fs/cgroup"), done.stdout
    assert "(Permission denied)" in done.stdout


def test_nothing_running_is_said_and_a_runtime_that_cannot_measure_says_why(
    session: Session, world: World, project: Project, runtime: LocalRuntime
) -> None:
    env_id = _env(session, world, project)
    idle = environment_usage(session=session, actor=world.viewer, runtime=runtime, environment_id=env_id)
    assert (idle["available"], idle["rows"], idle["note"]) == (True, [], "No container is running.")

    class Blind(LocalRuntime):
        def usage(self, environment_id: int) -> Usage:
            return Usage(available=False, reason="no metrics API here", source="metrics.k8s.io")

    usage.forget(env_id)
    blind = Blind(runtime.root)
    view = environment_usage(session=session, actor=world.viewer, runtime=blind, environment_id=env_id)
    assert (view["available"], view["rows"], view["series"]) == (False, [], [])
    assert view["note"] == "Not measured: no metrics API here."
