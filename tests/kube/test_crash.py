"""A worker SIGKILLed between every provisioning step; the next one converges without orphans or duplicates.

Stopping a worker *exactly* between two steps needs a pause point that is not
a timing guess. Every step's start is written to the environment's row (its
message) before the step touches the cluster, so the test holds that row's
lock (``SELECT ... FOR UPDATE`` in its own transaction) and lets the worker's
writes through one at a time: once step X is recorded done, the worker is
stuck on recording the start of step X+1 and has not touched the cluster for
it. That is when it is killed, with its whole process group (its reconciler
process included), as a crash or an OOM kill would.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from envhub.config import Settings
from envhub.domain.phases import Phase
from envhub.models import Environment, JobRun, JobStatus
from envhub.services import ports
from envhub.services.environments import create_environment
from envhub.services.projects import create_project
from tests.kube.helpers import Kube, KubeWorkers, web_service
from tests.support.db import fetch, fetch_all
from tests.support.waiting import wait_for
from tests.support.world import World

pytestmark = [pytest.mark.kube, pytest.mark.slow]

STEPS = ("namespace", "isolation", "workloads", "health")


class RowLock:
    """The environment row's lock, held in a transaction of the test's own."""

    def __init__(self, database_url: str, environment_id: int) -> None:
        self.conn = psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://"))
        self.conn.execute("SET lock_timeout = '60s'")
        self.conn.commit()
        self.environment_id = environment_id

    def take(self) -> None:
        self.conn.execute("SELECT id FROM environment WHERE id = %s FOR UPDATE", (self.environment_id,))

    def step(self) -> None:
        """Let through the writes waiting for the row, then take it back.

        PostgreSQL grants the row in the order it was asked for: the writes
        already waiting go first, and the worker's next write queues behind us.
        """
        self.conn.rollback()
        self.take()

    def close(self) -> None:
        if not self.conn.closed:
            self.conn.rollback()
            self.conn.close()


@pytest.fixture
def row_lock(database_url: str) -> Iterator[Any]:
    # PostgreSQL row locks pause the worker between steps; the session database always is one.
    assert database_url.startswith("postgresql"), database_url
    locks: list[RowLock] = []

    def make(environment_id: int) -> RowLock:
        locks.append(RowLock(database_url, environment_id))
        return locks[-1]

    yield make
    for lock in locks:
        lock.close()


Seen = set[tuple[str, str, str | None, str | None]]


def recorded(db: Engine, env_id: int) -> Seen:
    """Every (step, status, started_at, finished_at) the environment's runs hold now.

    Across all runs: the reconciler's re-drive copies a lost run's steps, so a
    step finished in this round is recognised by a record never seen before,
    whichever run carries it.
    """
    return {
        (s["key"], s["status"], s.get("started_at"), s.get("finished_at"))
        for run in fetch_all(db, JobRun, JobRun.environment_id == env_id)
        for s in run.steps
    }


def newly(now: Seen, before: Seen, step: str, *statuses: str) -> bool:
    return any(record[0] == step and record[1] in statuses for record in now - before)


def cluster_state(kube: Kube, env_id: int) -> dict[str, int]:
    """How many of each envhub object the environment has on the cluster right now."""
    namespaces = kube.live_namespaces(env_id)
    state = {"namespaces": len(namespaces)}
    for ns in namespaces:
        state["quotas"] = len(kube.items(f"/api/v1/namespaces/{ns}/resourcequotas"))
        state["policies"] = len(kube.items(f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies"))
        state["roles"] = len(kube.items(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles"))
        deployments = kube.items(f"/apis/apps/v1/namespaces/{ns}/deployments")
        state["deployments"] = len(deployments)
        state["available"] = sum(int(d.get("status", {}).get("availableReplicas") or 0) for d in deployments)
        state["services"] = len(kube.items(f"/api/v1/namespaces/{ns}/services"))
        state["replicasets"] = len(kube.items(f"/apis/apps/v1/namespaces/{ns}/replicasets"))
        state["pods"] = len(kube.items(f"/api/v1/namespaces/{ns}/pods"))
    return state


def test_a_worker_killed_between_every_step_converges_once(
    kube_settings: Settings,
    session: Session,
    world: World,
    db: Engine,
    kube: Kube,
    workers: KubeWorkers,
    row_lock: Any,
) -> None:
    project = create_project(
        session=session,
        actor=world.owner,
        team_id=world.acme,
        name="shop",
        workloads={"services": [web_service()]},
    )
    assert project.id is not None
    env = create_environment(
        session=session, actor=world.member, queue=ports.queue(), project_id=project.id, name="pr-9"
    )
    assert env.id is not None
    env_id = env.id
    lock = row_lock(env_id)
    lock.take()

    at_kill: dict[str, dict[str, int]] = {}
    for index, step in enumerate(STEPS):
        before = recorded(db, env_id)
        worker = workers.start()

        def step_done(step: str = step, before: Seen = before) -> bool:
            if newly(recorded(db, env_id), before, step, "done"):
                return True
            lock.step()
            return False

        wait_for(
            step_done,
            timeout=120,
            interval=0.05,
            what=f"step {step} to be done",
            describe=workers.log_tail,
        )
        # Still holding the row: the next step has not started (it cannot record that it did).
        if index + 1 < len(STEPS):
            assert not newly(recorded(db, env_id), before, STEPS[index + 1], "running", "done")
        at_kill[step] = cluster_state(kube, env_id)
        workers.kill(worker)
        lock.step()  # the dead worker's pending write goes through and is rolled back with its connection

    lock.close()
    workers.start()

    # What existed when each worker died: each step's objects, and nothing of the next one.
    assert at_kill["namespace"] == {"namespaces": 1, "quotas": 0, "policies": 0, "roles": 0, "deployments": 0,
                                    "available": 0, "services": 0, "replicasets": 0, "pods": 0}  # fmt: skip
    assert at_kill["isolation"]["quotas"] == 1
    # Roles: the workload account's and the team's view and edit (domain/kube/access.py).
    assert (at_kill["isolation"]["policies"], at_kill["isolation"]["roles"]) == (4, 3)
    assert at_kill["isolation"]["deployments"] == 0
    assert (at_kill["workloads"]["deployments"], at_kill["workloads"]["services"]) == (1, 1)
    assert at_kill["health"]["available"] == 1

    def converged() -> Environment | None:
        row = fetch(db, Environment, env_id)
        assert row is not None
        assert row.phase is not Phase.failed, f"{row.error_code}: {row.message}\n{workers.log_tail()}"
        return row if row.phase is Phase.ready else None

    ready = wait_for(
        converged, timeout=180, interval=0.2, what="ready after the last crash", describe=workers.log_tail
    )
    assert ready.observed_generation == ready.desired_generation == 1
    assert ready.public_url == "http://pr-9.shop.acme.localhost:3000/"

    runs = fetch_all(db, JobRun, JobRun.environment_id == env_id)
    assert runs[-1].status is JobStatus.succeeded
    # One lost run per kill (more only if a starved machine let a heartbeat go stale).
    assert len(runs) >= 5
    assert all(run.status is JobStatus.abandoned for run in runs[:-1])
    assert all("worker stopped responding" in (run.error or "") for run in runs[:-1])

    # Exactly one namespace, every object once, one ReplicaSet and one pod: no orphan, no duplicate.
    assert kube.live_namespaces() == [f"envhub-acme-shop-pr-9-{env_id}"]
    final = cluster_state(kube, env_id)
    assert final == {"namespaces": 1, "quotas": 1, "policies": 4, "roles": 3, "deployments": 1,
                     "available": 1, "services": 1, "replicasets": 1, "pods": 1}  # fmt: skip
