"""A declared Redis on the Kubernetes backend (services/provisioning.py with redis_workloads.py).

The job's own path, without a cluster (tests/kube/test_managed_redis.py runs it
on one): ``convergence.prepared`` makes the instance row and its password,
commits them, and hands the runtime a target whose ``service_objects`` hold
the Redis's objects to apply (the placement the backend rendered, as a
CloudNativePG Cluster's) and whose secrets hold ``REDIS_URL``, pointing at its
Service in the environment's namespace. A killed job comes back to the same
password, a rotation makes a new one, a Redis the workloads bring is not made,
and removal has nothing to leave behind.
"""

from __future__ import annotations

from urllib.parse import quote, unquote, urlsplit

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from envhub.domain.kube import namespace_for
from envhub.domain.kube.redis import render_redis
from envhub.domain.specs import EnvironmentTarget
from envhub.integrations.backing.base import Backends
from envhub.integrations.backing.redis_workloads import RedisWorkloads
from envhub.models import InstanceState, Project, ServiceInstance
from envhub.services import backing, convergence, ports, provisioning
from envhub.services.environments import create_environment, redeploy_environment
from envhub.services.projects import create_project, update_project
from tests.support.db import audit_events, fetch_all
from tests.support.fakes import FakeQueue
from tests.support.runtime import RecordingProgress
from tests.support.world import World

IMAGE = "registry.example.com/library/redis:7.2.7"
BACKENDS = Backends(redis_workloads=RedisWorkloads(image=IMAGE), labels={"redis": "workload"})


@pytest.fixture
def queue() -> FakeQueue:
    return FakeQueue()


@pytest.fixture
def shop(session: Session, world: World) -> Project:
    return create_project(
        session=session,
        actor=world.owner,
        team_id=world.acme,
        name="shop",
        workloads={"services": [{"name": "web", "image": "ghcr.io/acme/web:1", "ports": [8080]}]},
        backing=[{"name": "cache", "kind": "redis", "size": "2Gi"}],
    )


@pytest.fixture
def env_id(session: Session, world: World, shop: Project, queue: FakeQueue) -> int:
    assert shop.id is not None
    created = create_environment(
        session=session, actor=world.member, queue=queue, project_id=shop.id, name="pr-1"
    )
    assert created.id is not None
    return created.id


def _prepare(session: Session, queue: FakeQueue) -> tuple[convergence.Assignment, EnvironmentTarget]:
    """What the environment job does before the runtime applies: claim the last run, provision."""
    environment_id, run_id = queue.jobs[-1].args
    assignment = convergence.begin_run(session, environment_id=environment_id, run_id=run_id)
    assert assignment is not None
    target = convergence.prepared(
        session, assignment, urls=ports.url_provider(), backends=BACKENDS, progress=RecordingProgress()
    )
    return assignment, target


def _password(target: EnvironmentTarget) -> str:
    return unquote(urlsplit(target.secrets["REDIS_URL"]).password or "")


def test_a_declared_redis_becomes_a_workload_of_the_target_and_its_url_a_secret(
    session: Session, queue: FakeQueue, env_id: int, db: Engine
) -> None:
    _, target = _prepare(session, queue)
    password = _password(target)
    assert len(password) >= 24
    assert list(target.service_objects) == render_redis(
        "cache", password=password, image=IMAGE, persistent=True, size="2Gi"
    )
    assert target.secrets["REDIS_URL"] == (
        f"redis://:{quote(password, safe='')}@envhub-redis-cache.{namespace_for(target)}.svc:6379/0"
    )
    assert target.secrets_digest
    assert target.service_sockets == ()  # nothing to relay: the cluster's network carries it
    [row] = fetch_all(db, ServiceInstance)
    assert (row.environment_id, row.state, row.backend, row.kind) == (
        env_id,
        InstanceState.ready,
        "workload",
        "redis",
    )
    assert row.credential
    assert password not in row.credential  # sealed
    assert all(password not in str(event.details) for event in audit_events(db))


def test_a_killed_job_comes_back_to_the_same_password(
    session: Session, queue: FakeQueue, env_id: int, db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = RedisWorkloads.place

    def dies(*args: object, **kwargs: object) -> object:
        raise SystemExit("worker killed")  # after the row and its password were committed

    monkeypatch.setattr(RedisWorkloads, "place", dies)
    with pytest.raises(SystemExit):
        _prepare(session, queue)
    [sealed] = [row.credential for row in fetch_all(db, ServiceInstance)]
    assert sealed
    monkeypatch.setattr(RedisWorkloads, "place", real)
    session.rollback()
    _, target = _prepare(session, queue)
    [row] = fetch_all(db, ServiceInstance)  # one row, never two
    assert row.credential == sealed
    again = _prepare(session, queue)[1]
    assert _password(again) == _password(target)
    assert list(again.service_objects) == list(target.service_objects)
    assert again.secrets_digest == target.secrets_digest  # a re-run rolls nothing


def test_a_rotation_gives_the_redis_and_its_url_a_new_password(
    session: Session, world: World, queue: FakeQueue, env_id: int
) -> None:
    assignment, before = _prepare(session, queue)
    convergence.complete_run(session, assignment, public_url="http://pr-1.shop.acme.localhost:3000/")
    backing.rotate_service_credentials(
        session=session, actor=world.member, queue=queue, environment_id=env_id, service="cache"
    )
    _, after = _prepare(session, queue)
    assert _password(after) != _password(before)
    assert list(after.service_objects) == render_redis(
        "cache", password=_password(after), image=IMAGE, size="2Gi"
    )
    assert after.secrets_digest != before.secrets_digest  # the app's pods roll too


def test_a_redis_the_workloads_bring_is_not_made(
    session: Session, world: World, queue: FakeQueue, db: Engine
) -> None:
    own = create_project(
        session=session,
        actor=world.owner,
        team_id=world.acme,
        name="own",
        workloads={"services": [{"name": "queue", "image": "redis:7-alpine", "ports": [6379]}]},
        backing=[{"name": "cache", "kind": "redis"}],
    )
    assert own.id is not None
    create_environment(session=session, actor=world.member, queue=queue, project_id=own.id, name="pr-1")
    _, target = _prepare(session, queue)
    assert target.service_objects == ()
    assert "REDIS_URL" not in target.secrets
    [row] = fetch_all(db, ServiceInstance)
    assert (row.state, row.reason) == (
        InstanceState.skipped,
        "not provisioned: service queue runs redis:7-alpine",
    )


def test_a_dropped_declaration_and_a_deleted_environment_leave_nothing(
    session: Session, world: World, shop: Project, queue: FakeQueue, env_id: int, db: Engine
) -> None:
    _prepare(session, queue)
    assert shop.id is not None
    update_project(session=session, actor=world.owner, project_id=shop.id, changes={"backing": []})
    # The next deploy hands the runtime no Redis: it prunes the objects (tests/kube shows it).
    redeploy_environment(session=session, actor=world.member, queue=queue, environment_id=env_id)
    _, target = _prepare(session, queue)
    assert target.service_objects == ()
    assert "REDIS_URL" not in target.secrets
    [row] = fetch_all(db, ServiceInstance)
    assert (row.state, row.credential) == (InstanceState.removed, "")
    # Nothing outside the environment holds an instance: nothing for the reconciler either.
    assert provisioning.remove_orphans(session, BACKENDS) == []


def test_deleting_the_environment_releases_the_instance_quietly(
    session: Session, queue: FakeQueue, env_id: int, db: Engine
) -> None:
    _prepare(session, queue)
    progress = RecordingProgress()
    provisioning.release(session, env_id, backends=BACKENDS, progress=progress)
    [row] = fetch_all(db, ServiceInstance)
    assert (row.state, row.credential) == (InstanceState.removed, "")
    assert progress.outcome(provisioning.REMOVE_STEP) == "finish"
