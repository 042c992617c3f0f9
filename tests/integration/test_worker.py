"""Real workers: jobs converge environments, survive crashes, Redis loss and drift."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from redis import Redis
from sqlalchemy.engine import Engine
from sqlmodel import Session

from envhub.api.app import create_api
from envhub.config import Settings, override_settings
from envhub.domain.phases import Phase
from envhub.models import Environment, JobRun, JobStatus, Project
from envhub.runtime.local import LocalRuntime
from envhub.services import ports
from envhub.services.environments import create_environment, delete_environment
from tests.conftest import build_settings
from tests.support.db import audit_events, fetch, fetch_all
from tests.support.runtime import endpoint_get, is_gone, kill_environments, process_tree, recorded_pid
from tests.support.servers import serve_asgi
from tests.support.waiting import wait_for
from tests.support.workers import Workers
from tests.support.world import World

pytestmark = pytest.mark.slow


@pytest.fixture
def worker_settings(settings: Settings) -> Iterator[Settings]:
    """The same settings the workers get, so this process sees what they see."""
    values = {**settings.model_dump(), "reconcile_interval": 0.5, "job_stale_after": 2.0}
    with override_settings(build_settings(**values)) as configured:
        ports.reset()
        yield configured
    ports.reset()


@pytest.fixture
def runtime(worker_settings: Settings) -> Iterator[LocalRuntime]:
    local = LocalRuntime(worker_settings.envs_dir)
    yield local
    kill_environments(local)


@pytest.fixture
def workers(worker_settings: Settings, tmp_path: Path, runtime: LocalRuntime) -> Iterator[Workers]:
    pool = Workers(worker_settings, tmp_path)
    yield pool
    pool.stop_all()


def create(session: Session, world: World, project: Project, command: str, name: str = "pr-1") -> int:
    assert project.id is not None
    env = create_environment(
        session=session,
        actor=world.member,
        queue=ports.queue(),
        project_id=project.id,
        name=name,
        overrides={"command": command},
    )
    assert env.id is not None
    return env.id


def wait_phase(db: Engine, env_id: int, phase: Phase, workers: Workers, timeout: float = 120) -> Environment:
    def check() -> Environment | None:
        env = fetch(db, Environment, env_id)
        assert env is not None
        if env.phase is Phase.failed and phase is not Phase.failed:
            raise AssertionError(f"environment failed: {env.error_code}: {env.message}\n{workers.log_tail()}")
        return env if env.phase is phase else None

    return wait_for(
        check, timeout=timeout, interval=0.2, what=f"phase {phase.value}", describe=workers.log_tail
    )


def trees_running(token: str) -> list[psutil.Process]:
    """The top process of each tree running the command that names ``token``.

    The shell usually runs the command's last line with exec, so the top
    process is first ``sh -c ...`` and then, with the same pid, the server;
    both name the token (the server through its ``-d`` folder), the
    sandbox's launcher is neither.
    """
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        is_top = proc.info["name"] == "sh" or cmdline[:3] == ["python3", "-m", "http.server"]
        if is_top and any(token in part for part in cmdline) and not is_gone(proc):
            found.append(proc)
    # A shell that did not exec its last line is the parent of the server: one tree.
    pids = {proc.pid for proc in found}
    return [proc for proc in found if not pids & {parent.pid for parent in _parents(proc)}]


def _parents(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return proc.parents()
    except psutil.Error:
        return []


def test_environment_reaches_ready_answers_through_the_gateway_and_is_deleted(
    session: Session, world: World, project: Project, db: Engine, workers: Workers, runtime: LocalRuntime
) -> None:
    worker = workers.start()
    env_id = create(
        session, world, project, "echo hello from pr-1 > index.html; python3 -m http.server $PORT"
    )
    env = wait_phase(db, env_id, Phase.ready, workers)
    assert env.public_url == "http://pr-1.shop.acme.localhost:3000/"
    [run] = fetch_all(db, JobRun)
    assert run.status is JobStatus.succeeded
    # The job ran in the worker's own process, not in a fork of it: what jobs need stays warm.
    env_dir = runtime.workspace_path(env_id).parent
    assert psutil.Process(recorded_pid(env_dir)).ppid() == worker.pid

    with serve_asgi(create_api()) as port:
        response = httpx.get(
            f"http://127.0.0.1:{port}/index.html",
            headers={"Host": "pr-1.shop.acme.localhost:3000"},
            timeout=30,
        )
    assert response.status_code == 200
    assert response.text == "hello from pr-1\n"

    tree = process_tree(recorded_pid(env_dir))
    session.expire_all()
    delete_environment(session=session, actor=world.member, queue=ports.queue(), environment_id=env_id)
    gone = wait_phase(db, env_id, Phase.deleted, workers)
    assert gone.deleted_at is not None
    assert not env_dir.exists()
    assert all(is_gone(p) for p in tree)
    actions = [e.action for e in audit_events(db)]
    assert actions[-1] == "environment.deleted"
    assert "environment.ready" in actions


def test_a_worker_killed_mid_provisioning_is_re_driven_without_duplicates(
    session: Session, world: World, project: Project, db: Engine, workers: Workers, runtime: LocalRuntime
) -> None:
    token = f"t{uuid.uuid4().hex[:12]}"
    first = workers.start()
    env_id = create(
        session, world, project, f"mkdir -p {token}; sleep 3; python3 -m http.server $PORT -d {token}/.."
    )

    def health_running() -> JobRun | None:
        runs = fetch_all(db, JobRun)
        steps = {s["key"]: s["status"] for s in runs[-1].steps} if runs else {}
        return runs[-1] if steps.get("health") == "running" else None

    interrupted = wait_for(
        health_running, timeout=60, what="the health step to run", describe=workers.log_tail
    )
    # The health step starts as the sandbox does: its shell may not be there yet.
    [tree_before] = wait_for(
        lambda: trees_running(token) or None, timeout=30, what="the command's process tree"
    )
    pid_before = recorded_pid(runtime.workspace_path(env_id).parent)

    killed = workers.kill(first)
    assert len(killed) >= 2, "the worker and its reconciler process should have been killed"
    assert fetch(db, Environment, env_id).phase is Phase.provisioning  # type: ignore[union-attr]

    workers.start()
    env = wait_phase(db, env_id, Phase.ready, workers)
    assert env.observed_generation == 1

    runs = fetch_all(db, JobRun)
    assert runs[0].id == interrupted.id
    assert runs[0].status is JobStatus.abandoned
    assert "worker stopped responding" in (runs[0].error or "")
    assert runs[-1].status is JobStatus.succeeded
    # Exactly one process tree: the one started before the crash was adopted, not duplicated.
    assert [p.pid for p in trees_running(token)] == [tree_before.pid]
    assert recorded_pid(runtime.workspace_path(env_id).parent) == pid_before
    endpoint = runtime.endpoint(env_id)
    assert endpoint is not None
    assert endpoint_get(endpoint, timeout=30).status_code == 200


def test_losing_redis_loses_no_work(
    session: Session,
    world: World,
    project: Project,
    db: Engine,
    workers: Workers,
    redis: Redis,
    worker_settings: Settings,
) -> None:
    env_id = create(session, world, project, "python3 -m http.server $PORT")  # no worker yet
    [run] = fetch_all(db, JobRun)
    queue = ports.queue()
    assert queue.is_pending(run.rq_job_id or "")
    redis.flushdb()
    assert not queue.is_pending(run.rq_job_id or "")

    workers.start()
    env = wait_phase(db, env_id, Phase.ready, workers)
    assert env.observed_generation == 1
    assert fetch_all(db, JobRun)[-1].status is JobStatus.succeeded


def test_the_reconciler_restarts_a_drifted_environment_and_removes_orphans(
    session: Session, world: World, project: Project, db: Engine, workers: Workers, runtime: LocalRuntime
) -> None:
    orphan = runtime.workspace_path(4242)
    orphan.mkdir(parents=True)
    workers.start()
    env_id = create(session, world, project, "python3 -m http.server $PORT")
    wait_phase(db, env_id, Phase.ready, workers)
    wait_for(
        lambda: audit_events(db, "environment.orphan_removed"),
        what="the orphan to be removed",
        describe=workers.log_tail,
    )
    assert [e.target_id for e in audit_events(db, "environment.orphan_removed")] == [4242]
    assert not orphan.parent.exists()

    env_dir = runtime.workspace_path(env_id).parent
    tree = process_tree(recorded_pid(env_dir))
    for proc in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()  # behind envhub's back: a crash, an OOM kill, a reboot

    def restarted() -> bool:
        env = fetch(db, Environment, env_id)
        return bool(env and env.phase is Phase.ready and env.desired_generation == 2)

    wait_for(restarted, timeout=120, what="the environment to be restarted", describe=workers.log_tail)
    assert recorded_pid(env_dir) not in {p.pid for p in tree}
    assert [e.target_id for e in audit_events(db, "environment.drift_detected")] == [env_id]
    endpoint = runtime.endpoint(env_id)
    assert endpoint is not None
    assert endpoint_get(endpoint, timeout=30).status_code == 200
