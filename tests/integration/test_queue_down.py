"""The real Redis queue when Redis is down or hangs: requests fail fast, and no work is lost.

envhub's queue port promises (envhub/queue/base.py) that ``enqueue`` may fail
with ``QueueUnavailable`` while the desired state and its JobRun are already
committed, so the reconciler re-drives the work once Redis is back. These
tests check that promise on the real adapter (envhub/queue/redis_queue.py:
RQ on a real ``redis-server``), with that server stopped, and with it frozen
by SIGSTOP (the kernel still accepts connections; nothing ever answers), which
without socket timeouts would hang the request for good.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from envhub.config import Settings, override_settings
from envhub.models import Environment, JobRun, JobStatus, Project
from envhub.queue.base import QueueUnavailable
from envhub.queue.redis_queue import COMMAND_TIMEOUT, RedisJobQueue
from envhub.runtime.local import LocalRuntime
from envhub.services import ports
from envhub.services.environments import create_environment
from envhub.services.reconciliation import reconcile
from tests.conftest import build_settings
from tests.support.db import fetch_all
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_for
from tests.support.world import World

pytestmark = pytest.mark.slow

# A request meets at most two timeouts (the enqueue, then the best-effort change
# notification), each given up after COMMAND_TIMEOUT; a hung Redis must cost no more.
FAST = 3 * COMMAND_TIMEOUT


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, which it may stop or freeze."""
    own = RedisServer(tmp_path / "redis").start()
    yield own
    own.stop()


@pytest.fixture
def queue_settings(settings: Settings, server: RedisServer) -> Iterator[Settings]:
    values = {**settings.model_dump(), "redis_url": server.url}
    with override_settings(build_settings(**values)) as configured:
        ports.reset()
        yield configured
    ports.reset()


def create(session: Session, world: World, project: Project) -> tuple[int, float]:
    """Create an environment through the real queue; its id and how long the request took."""
    assert project.id is not None
    started = time.monotonic()
    env = create_environment(
        session=session,
        actor=world.member,
        queue=ports.queue(),
        project_id=project.id,
        name="pr-1",
        overrides={"command": "python3 -m http.server $PORT"},
    )
    assert env.id is not None
    return env.id, time.monotonic() - started


def redriven(session: Session, queue_settings: Settings) -> None:
    """One reconciler pass, as a worker's reconciler would run it."""
    session.commit()
    runtime = LocalRuntime(queue_settings.envs_dir)
    reconcile(session=session, queue=ports.queue(), runtime=runtime)


def assert_recorded_not_enqueued(db: Engine, env_id: int) -> JobRun:
    [env] = fetch_all(db, Environment)
    assert (env.id, env.desired_generation) == (env_id, 1)
    [run] = fetch_all(db, JobRun)
    assert (run.environment_id, run.status, run.enqueued_at) == (env_id, JobStatus.queued, None)
    return run


@pytest.mark.parametrize("down", ["stopped", "frozen"])
def test_a_down_queue_fails_fast_and_the_work_is_redriven_when_it_is_back(
    down: str,
    server: RedisServer,
    queue_settings: Settings,
    session: Session,
    world: World,
    project: Project,
    db: Engine,
) -> None:
    queue = ports.queue()
    assert isinstance(queue, RedisJobQueue)
    queue.connection.ping()  # a pooled connection exists, as in a running web process
    if down == "stopped":
        server.stop()
    else:
        server.pause()

    started = time.monotonic()
    with pytest.raises(QueueUnavailable):
        queue.enqueue("envhub.jobs.environments.converge_environment", 1, 1, job_id="direct")
    assert time.monotonic() - started < FAST

    # Through the use case: the request completes, the environment and its run are recorded.
    env_id, took = create(session, world, project)
    assert took < FAST, f"creating an environment with Redis {down} took {took:.1f}s"
    run = assert_recorded_not_enqueued(db, env_id)

    # The reconciler, with Redis still down, keeps the run and says so; nothing is lost.
    redriven(session, queue_settings)
    assert_recorded_not_enqueued(db, env_id)

    if down == "stopped":
        server.start()  # the same port and password
    else:
        server.resume()

    def enqueued() -> JobRun | None:
        # A run is re-driven once it is a couple of seconds old (reconciliation._ENQUEUE_GRACE).
        redriven(session, queue_settings)
        [after] = fetch_all(db, JobRun)
        return after if after.enqueued_at is not None else None

    after = wait_for(enqueued, timeout=30, interval=0.5, what="the reconciler to enqueue the recorded run")
    assert after.id == run.id
    assert queue.is_pending(after.rq_job_id or "")
