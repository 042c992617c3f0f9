"""End to end through the services, with real workers on the real cluster.

create_environment -> worker -> namespace, isolation, workloads -> ready (the
pods' HTTP server answers) -> delete_environment -> deleting while the namespace
terminates -> deleted once it is gone. And the reconciler: orphan namespaces
are removed, a Deployment deleted behind envhub's back is re-created.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from envhub.domain.kube import namespace_for
from envhub.domain.phases import Phase
from envhub.models import Environment, JobRun, JobStatus, Project
from envhub.runtime.kubernetes import KubernetesRuntime
from envhub.services import ports
from envhub.services.environments import create_environment, delete_environment
from envhub.services.projects import create_project
from tests.kube.helpers import Kube, KubeWorkers, web_service
from tests.support.db import audit_events, fetch, fetch_all
from tests.support.runtime import RecordingProgress, make_target
from tests.support.waiting import wait_for
from tests.support.world import World

pytestmark = [pytest.mark.kube, pytest.mark.slow]


def shop(session: Session, world: World, **service: Any) -> tuple[Project, dict[str, Any]]:
    web = web_service(**service)
    project = create_project(
        session=session, actor=world.owner, team_id=world.acme, name="shop", workloads={"services": [web]}
    )
    return project, web


def env_row(db: Engine, env_id: int) -> Environment:
    row = fetch(db, Environment, env_id)
    assert row is not None
    return row


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def wait_phase(
    db: Engine, env_id: int, phase: Phase, workers: KubeWorkers, timeout: float = 120
) -> Environment:
    def check() -> Environment | None:
        env = env_row(db, env_id)
        if env.phase is Phase.failed and phase is not Phase.failed:
            raise AssertionError(f"environment failed: {env.error_code}: {env.message}\n{workers.log_tail()}")
        return env if env.phase is phase else None

    return wait_for(
        check, timeout=timeout, interval=0.2, what=f"phase {phase.value}", describe=workers.log_tail
    )


def test_an_environment_is_created_served_and_deleted_through_the_services(
    session: Session, world: World, db: Engine, workers: KubeWorkers, kube: Kube
) -> None:
    project, web = shop(session, world)
    assert project.id is not None
    workers.start()
    env = create_environment(
        session=session, actor=world.member, queue=ports.queue(), project_id=project.id, name="pr-1"
    )
    assert env.id is not None
    env_id = env.id
    ready = wait_phase(db, env_id, Phase.ready, workers)
    assert ready.public_url == "http://pr-1.shop.acme.localhost:3000/"
    assert (ready.observed_generation, ready.error_code) == (1, None)
    # With the tests' 2 s stale-heartbeat setting a starved machine may re-drive a run;
    # what must hold is that the last one succeeded and recorded every step.
    run = fetch_all(db, JobRun)[-1]
    assert run.status is JobStatus.succeeded
    assert [(s["key"], s["status"]) for s in run.steps] == [
        ("namespace", "done"),
        ("isolation", "done"),
        ("workloads", "done"),
        ("health", "done"),
        ("publish", "done"),
    ]
    ns = f"envhub-acme-shop-pr-1-{env_id}"
    assert kube.live_namespaces(env_id) == [ns]
    # The workload is a real process: the test kubelet runs the container's command. With no
    # readiness probe "available" means "started", so the server may need a moment to listen.
    url = f"http://127.0.0.1:{web['ports'][0]}/"
    wait_for(lambda: answers(url), timeout=60, what=f"{url} to answer")

    session.expire_all()
    delete_environment(session=session, actor=world.member, queue=ports.queue(), environment_id=env_id)
    seen: list[tuple[Phase, str]] = []

    def deleted() -> bool:
        phase = env_row(db, env_id).phase  # read the phase first: "deleted" must imply "gone"
        namespace = kube.get(f"/api/v1/namespaces/{ns}")
        state = "gone" if namespace is None else namespace["status"]["phase"]
        seen.append((phase, state))
        return phase is Phase.deleted

    wait_for(deleted, timeout=120, interval=0.2, what="deleted", describe=workers.log_tail)
    assert (Phase.deleting, "Terminating") in seen  # deleting while the namespace is finalized...
    assert all(state == "gone" for phase, state in seen if phase is Phase.deleted)  # ...deleted once gone
    assert kube.namespace_gone(ns)
    gone = env_row(db, env_id)
    assert gone.deleted_at is not None
    runs = [r for r in fetch_all(db, JobRun) if r.kind == "teardown"]
    assert runs[-1].status is JobStatus.succeeded
    # The run that deleted the namespace recorded both steps. (On a loaded machine the
    # 2 s stale-heartbeat setting may have had it re-driven: the re-run finds nothing left.)
    assert [(s["key"], s["status"]) for s in runs[0].steps] == [("stop", "done"), ("cleanup", "done")]
    actions = [e.action for e in audit_events(db)]
    assert actions[-1] == "environment.deleted"
    assert "environment.ready" in actions
    assert "environment.deleting" in actions or "environment.delete" in actions


def test_a_teardown_holds_no_worker_while_its_namespace_is_finalized(
    session: Session, world: World, db: Engine, workers: KubeWorkers, kube: Kube
) -> None:
    project, _ = shop(session, world)
    assert project.id is not None
    workers.start()  # one worker: a teardown that waited for the finalizers would hold it
    first = create_environment(
        session=session, actor=world.member, queue=ports.queue(), project_id=project.id, name="pr-1"
    )
    assert first.id is not None
    first_id = first.id
    wait_phase(db, first_id, Phase.ready, workers)
    [namespace] = kube.live_namespaces(first_id)

    def teardown() -> JobRun:
        return [r for r in fetch_all(db, JobRun) if r.kind == "teardown"][-1]

    with kube.held(namespace) as release:
        session.expire_all()
        delete_environment(session=session, actor=world.member, queue=ports.queue(), environment_id=first_id)
        run = wait_for(
            lambda: (run := teardown()).status is JobStatus.queued and run.retry_at is not None and run,
            timeout=60,
            what="the teardown to wait for the namespace, off the worker",
            describe=workers.log_tail,
        )
        assert [(s["key"], s["status"]) for s in run.steps] == [("stop", "done"), ("cleanup", "running")]
        assert env_row(db, first_id).phase is Phase.deleting
        second = create_environment(
            session=session, actor=world.member, queue=ports.queue(), project_id=project.id, name="pr-2"
        )
        assert second.id is not None
        wait_phase(db, second.id, Phase.ready, workers)  # the one worker was free for it
        assert env_row(db, first_id).phase is Phase.deleting
        assert kube.get(f"/api/v1/namespaces/{namespace}") is not None
        release()
    wait_phase(db, first_id, Phase.deleted, workers)
    assert kube.namespace_gone(namespace)
    done = teardown()
    assert done.status is JobStatus.succeeded
    assert [(s["key"], s["status"]) for s in done.steps] == [("stop", "done"), ("cleanup", "done")]


def test_the_reconciler_removes_orphans_and_recreates_what_was_deleted_behind_its_back(
    session: Session,
    world: World,
    db: Engine,
    workers: KubeWorkers,
    kube: Kube,
    runtime: KubernetesRuntime,
) -> None:
    # An orphan: an envhub namespace whose environment the database does not know.
    orphan = make_target(777777, name="ghost", services=[web_service()])
    runtime.apply(orphan, progress=RecordingProgress())
    assert kube.live_namespaces(777777) == [namespace_for(orphan)]

    project, _web = shop(session, world)
    assert project.id is not None
    workers.start()
    env = create_environment(
        session=session, actor=world.member, queue=ports.queue(), project_id=project.id, name="pr-2"
    )
    assert env.id is not None
    env_id = env.id
    wait_phase(db, env_id, Phase.ready, workers)
    wait_for(
        lambda: audit_events(db, "environment.orphan_removed"),
        timeout=120,
        what="the orphan namespace to be removed",
        describe=workers.log_tail,
    )
    [removed] = audit_events(db, "environment.orphan_removed")
    assert (removed.target_id, removed.details) == (777777, {"removal": "started"})
    # The namespace controller finishes it; the reconciler does not wait, nor delete it again.
    wait_for(lambda: kube.namespace_gone(namespace_for(orphan)), timeout=120, what="the orphan to go")
    assert len(audit_events(db, "environment.orphan_removed")) == 1
    assert kube.live_namespaces(env_id) != []  # the live environment was left alone

    # Someone deletes the Deployment with kubectl: the watch records it, the reconciler re-drives.
    [ns] = kube.live_namespaces(env_id)
    before = kube.get(f"/apis/apps/v1/namespaces/{ns}/deployments/web")
    assert before is not None
    wait_for(lambda: env_row(db, env_id).condition is None, timeout=60, what="a clean condition")
    kube.kubectl("delete", "deployment", "web", "-n", ns)
    wait_for(
        lambda: env_row(db, env_id).desired_generation >= 2,
        timeout=120,
        what="the drift to be noticed",
        describe=workers.log_tail,
    )
    audited = audit_events(db, "environment.condition")
    assert "absent" in [(e.details or {}).get("to") for e in audited]
    assert [e.target_id for e in audit_events(db, "environment.drift_detected")][:1] == [env_id]

    def healed() -> bool:
        env = env_row(db, env_id)
        return (
            env.phase is Phase.ready
            and env.observed_generation == env.desired_generation
            and env.condition is None
        )

    wait_for(healed, timeout=120, interval=0.2, what="ready again", describe=workers.log_tail)
    after = kube.get(f"/apis/apps/v1/namespaces/{ns}/deployments/web")
    assert after is not None
    assert after["metadata"]["uid"] != before["metadata"]["uid"]  # re-created, not the old one
    assert kube.live_namespaces(env_id) == [ns]  # in the same, single namespace
    assert [d["metadata"]["name"] for d in kube.items(f"/apis/apps/v1/namespaces/{ns}/deployments")] == [
        "web"
    ]
