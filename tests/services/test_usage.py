"""services/usage.py with a real process tree: CPU and memory per container, a ring of readings
for the plot, and a clear answer (never zeros) where nothing can be measured."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlmodel import Session

from envhub.config import Settings
from envhub.models import Project
from envhub.runtime.base import Usage
from envhub.runtime.local import LocalRuntime
from envhub.services import usage
from envhub.services.environments import create_environment
from envhub.services.usage import environment_usage
from tests.support.components import require
from tests.support.fakes import FakeQueue
from tests.support.runtime import RecordingProgress, kill_environments, make_target
from tests.support.world import World

# Holds 64 MiB and keeps one core busy, while serving $PORT.
BUSY = (
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
    assert last["source"] == "process tree (psutil)"
    [row] = last["rows"]
    assert row["container"] == "main"
    assert row["memory_bytes"] >= 64 << 20  # what it holds, resident
    assert row["cpu_millicores"] > 0  # a core kept busy shows; the figure depends on the machine
    assert row["cpu"].endswith("m")
    [series] = last["series"]
    assert len(series["points"]) == 3  # one per reading, oldest first
    assert all(point["memory"] >= 64 for point in series["points"])


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
