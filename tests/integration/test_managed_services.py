"""Managed services end to end on the embedded default: real PostgreSQL and redis-server, the local runtime.

A project declares a database and a cache; the environment job makes an
instance of each per environment, and an app inside the sandbox writes rows
and keys through the injected variables (relayed from 127.0.0.1 to envhub's
own servers). One environment's credentials do not open another's database;
rotating a credential retires the old one; deleting the environment removes
its instances; a worker killed half-way converges without making anything twice.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from envhub.config import Settings, override_settings
from envhub.domain.phases import Phase
from envhub.integrations.backing.base import instance_name
from envhub.jobs.environments import converge_environment
from envhub.models import Environment, InstanceState, JobRun, Project, ServiceInstance
from envhub.runtime.base import ExecSession
from envhub.services import backing, ports
from envhub.services.environments import create_environment, delete_environment
from envhub.services.projects import update_project
from envhub.services.reconciliation import reconcile
from tests.support.db import audit_events, fetch, fetch_all
from tests.support.fakes import FakeQueue
from tests.support.world import World

# Inside the sandbox: Debian's psql without its Perl wrapper, and a raw RESP client.
_PSQL = sorted(Path("/usr/lib/postgresql").glob("*/bin/psql"))
_RESP = r"""
import os, socket, sys, urllib.parse
url = urllib.parse.urlsplit(os.environ["REDIS_URL"])
s = socket.create_connection((url.hostname, url.port))
def call(*args):
    parts = [b"$%d\r\n%s\r\n" % (len(a), a) for a in map(str.encode, args)]
    s.sendall(b"".join([b"*%d\r\n" % len(args)] + parts))
    return s.recv(65536).decode()
print(call("AUTH", urllib.parse.unquote(url.username), urllib.parse.unquote(url.password)).strip())
print(call(*sys.argv[1:]).strip())
"""


@pytest.fixture
def declared(session: Session, world: World, project: Project, short_settings: Settings) -> Project:
    assert project.id is not None
    return update_project(
        session=session,
        actor=world.owner,
        project_id=project.id,
        changes={"backing": [{"name": "db", "kind": "postgres"}, {"name": "cache", "kind": "redis"}]},
    )


# The app: at each start it uses its database and cache through the injected variables (a shell in
# a local environment gets envhub's variables only, not the project's secrets), writes what it saw
# into its workspace, then serves.
_APP = (
    '{psql} "$DATABASE_URL" -v ON_ERROR_STOP=1 -tAc '
    "'create table if not exists t (x int); insert into t values (40), (2); select sum(x) from t' "
    '> db.out 2>&1; echo "exit $?" >> db.out; printf %s "$DATABASE_URL" > url.out; '
    'python3 -c "$RESP" SET greeting hello > cache.out 2>&1; '
    'python3 -c "$RESP" GET greeting >> cache.out 2>&1; '
    "exec python3 -m http.server $PORT"
)


def _create(
    session: Session,
    world: World,
    project: Project,
    queue: FakeQueue,
    name: str,
    env: dict[str, str] | None = None,
) -> int:
    assert project.id is not None
    created = create_environment(
        session=session,
        actor=world.member,
        queue=queue,
        project_id=project.id,
        name=name,
        overrides={"command": _APP.format(psql=_psql_binary()), "env": {"RESP": _RESP, **(env or {})}},
    )
    assert created.id is not None
    return created.id


def _file(environment_id: int, name: str) -> str:
    """A file the app wrote in its workspace."""
    return _inside(environment_id, f"cat {name}")[1]


def _run(queue: FakeQueue) -> str:
    job = queue.jobs[-1]
    return converge_environment(*job.args)  # type: ignore[arg-type]


def _inside(environment_id: int, script: str, timeout: float = 30.0) -> tuple[int | None, str]:
    """Run ``sh -c script`` inside the environment, with its variables; (exit code, output)."""
    session: ExecSession = ports.runtime().exec(environment_id, ["sh", "-c", script], tty=False)
    chunks: list[bytes] = []
    try:
        while chunk := session.read(65536, timeout=timeout):
            chunks.append(chunk)
        return session.wait(timeout), b"".join(chunks).decode(errors="replace")
    finally:
        session.close()


def _psql(sql: str, url: str) -> str:
    return f"{_psql_binary()} {url} -v ON_ERROR_STOP=1 -tAc {sql!r}"


def _psql_binary() -> Path:
    assert _PSQL, "missing test component 'psql': install Debian's `postgresql` (make test-system-deps does)"
    return _PSQL[-1]


def test_an_app_writes_rows_and_keys_through_the_injected_variables(
    session: Session, world: World, declared: Project, db: Engine
) -> None:
    queue = FakeQueue()
    env_id = _create(session, world, declared, queue, "pr-1")
    assert _run(queue) == "ready"

    rows = {
        row["name"]: row
        for row in backing.environment_services(session=session, actor=world.member, environment_id=env_id)
    }
    assert {name: (row["state"], row["backend"]) for name, row in rows.items()} == {
        "db": ("ready", "embedded"),
        "cache": ("ready", "embedded"),
    }
    assert "DATABASE_URL" in rows["db"]["variables"]
    assert _file(env_id, "db.out").split()[-3:] == ["42", "exit", "0"]
    cache = _file(env_id, "cache.out")
    assert cache.count("+OK") == 3, cache  # AUTH, SET, AUTH
    assert "hello" in cache
    [run] = fetch_all(db, JobRun)
    assert ("services", "done") in [(step["key"], step["status"]) for step in run.steps]
    # Nothing of the credential reaches the audit trail.
    password = urlsplit(_file(env_id, "url.out")).password or ""
    assert len(password) >= 20
    assert all(password not in str(event.details) for event in audit_events(db))


def test_one_environments_credentials_do_not_open_anothers_database(
    session: Session, world: World, declared: Project
) -> None:
    queue = FakeQueue()
    first = _create(session, world, declared, queue, "pr-1")
    assert _run(queue) == "ready"
    second = _create(session, world, declared, queue, "pr-2")
    assert _run(queue) == "ready"
    own = urlsplit(_file(second, "url.out"))
    assert _inside(second, _psql("select count(*) from t", url=repr(own.geturl())))[1].strip() == "2"
    # pr-2's role and password, aimed at pr-1's database.
    code, out = _inside(
        second,
        _psql(
            "select count(*) from t", url=repr(own._replace(path=f"/{instance_name(first, 'db')}").geturl())
        ),
    )
    assert code != 0
    assert "permission denied" in out or "not permitted" in out or "authentication failed" in out, out


def test_rotation_retires_the_old_password(session: Session, world: World, declared: Project) -> None:
    queue = FakeQueue()
    env_id = _create(session, world, declared, queue, "pr-1")
    assert _run(queue) == "ready"
    old = _file(env_id, "url.out")
    backing.rotate_service_credentials(
        session=session, actor=world.member, queue=queue, environment_id=env_id, service="db"
    )
    assert _run(queue) == "ready"
    new = _file(env_id, "url.out")
    assert urlsplit(new).password != urlsplit(old).password
    # The same rows, through the new password.
    assert _file(env_id, "db.out").split()[-3:] == ["84", "exit", "0"]
    assert _inside(env_id, _psql("select 1", url=repr(new)))[0] == 0
    code, _ = _inside(env_id, _psql("select 1", url=repr(old)))
    assert code != 0


def test_a_killed_worker_converges_without_a_second_instance_and_delete_removes_everything(
    session: Session, world: World, declared: Project, db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = FakeQueue()
    env_id = _create(session, world, declared, queue, "pr-1")
    backends = ports.backing()
    calls: list[str] = []
    real = backends.redis.ensure  # type: ignore[union-attr]

    def dies_once(name: str, **kwargs: object) -> object:
        calls.append(name)
        if len(calls) == 1:
            raise SystemExit("worker killed")  # after the database and both credentials were committed
        return real(name, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(backends.redis, "ensure", dies_once)
    with pytest.raises(SystemExit):
        _run(queue)
    sealed = {row.service: row.credential for row in fetch_all(db, ServiceInstance)}
    assert sealed["db"]
    assert _run(queue) == "ready"
    rows = fetch_all(db, ServiceInstance)
    assert sorted(row.service for row in rows) == ["cache", "db"]  # one row each, never two
    assert {row.service: row.credential for row in rows}["db"] == sealed["db"]  # the same password
    assert backends.postgres.names() == {instance_name(env_id, "db")}  # type: ignore[union-attr]

    delete_environment(session=session, actor=world.member, queue=queue, environment_id=env_id)
    assert _run(queue) == "deleted"
    env = fetch(db, Environment, env_id)
    assert env is not None
    assert env.phase is Phase.deleted
    assert backends.postgres.names() == set()  # type: ignore[union-attr]
    assert backends.redis.names() == set()  # type: ignore[union-attr]
    with Session(db) as check:
        states = {row.service: (row.state, row.credential) for row in check.exec(select(ServiceInstance))}
    assert states == {"db": (InstanceState.removed, ""), "cache": (InstanceState.removed, "")}


def test_a_service_the_environment_brings_itself_is_skipped_saying_why(
    session: Session, world: World, declared: Project
) -> None:
    queue = FakeQueue()
    env_id = _create(
        session, world, declared, queue, "own-db", env={"DATABASE_URL": "postgresql://elsewhere/app"}
    )
    assert _run(queue) == "ready"
    rows = {
        row["name"]: row
        for row in backing.environment_services(session=session, actor=world.member, environment_id=env_id)
    }
    assert rows["db"]["state"] == "skipped"
    assert rows["db"]["reason"] == "not provisioned: the environment sets DATABASE_URL"
    assert rows["cache"]["state"] == "ready"
    assert _file(env_id, "url.out") == "postgresql://elsewhere/app"
    assert ports.backing().postgres.names() == set()  # type: ignore[union-attr]


def test_a_declared_bucket_without_a_backend_fails_the_deploy_with_a_hint(
    session: Session, world: World, project: Project, short_settings: Settings
) -> None:
    assert project.id is not None
    update_project(
        session=session,
        actor=world.owner,
        project_id=project.id,
        changes={"backing": [{"name": "files", "kind": "bucket"}]},
    )
    queue = FakeQueue()
    env_id = _create(session, world, project, queue, "pr-1")
    # The operator turned the embedded backends off and configured no S3 store.
    with override_settings(short_settings.model_copy(update={"services_embedded": False})):
        ports.reset()
        try:
            assert _run(queue) == "failed: not_supported"
        finally:
            ports.reset()
    [row] = backing.environment_services(session=session, actor=world.member, environment_id=env_id)
    assert (row["state"], row["error_code"]) == ("failed", "not_supported")
    assert "no backend for buckets" in row["reason"]


def test_psycopg_on_the_host_cannot_reach_the_embedded_server_without_a_password(
    session: Session, world: World, declared: Project
) -> None:
    queue = FakeQueue()
    env_id = _create(session, world, declared, queue, "pr-1")
    assert _run(queue) == "ready"
    socket_dir = Path(ports.backing().postgres.socket_dir)  # type: ignore[union-attr]
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(
            host=str(socket_dir), dbname=instance_name(env_id, "db"), user=instance_name(env_id, "db")
        )


def test_the_reconciler_removes_instances_no_environment_holds(
    session: Session, world: World, declared: Project, db: Engine
) -> None:
    queue = FakeQueue()
    env_id = _create(session, world, declared, queue, "pr-1")
    assert _run(queue) == "ready"
    backends = ports.backing()
    assert backends.redis is not None
    assert backends.postgres is not None
    # Left behind by a removal that died half-way, and by an environment whose rows are gone.
    stray = instance_name(env_id + 100, "db")
    backends.postgres.ensure(stray, password="x" * 24)
    report = reconcile(session=session, queue=queue, runtime=ports.runtime(), backends=backends)
    assert report.services_removed == [stray]
    assert backends.postgres.names() == {instance_name(env_id, "db")}
    assert backends.redis.names() == {instance_name(env_id, "cache")}
    assert [event.target for event in audit_events(db) if event.action == "service.orphan_removed"] == [stray]
    # Nothing to do the next time.
    assert (
        reconcile(session=session, queue=queue, runtime=ports.runtime(), backends=backends).services_removed
        == []
    )


def test_a_catalog_service_on_the_local_runtime_fails_the_deploy_saying_where_it_runs(
    session: Session, world: World, project: Project, short_settings: Settings
) -> None:
    example = Path(__file__).resolve().parents[2] / "deploy" / "catalog.example.yaml"
    assert project.id is not None
    with override_settings(short_settings.model_copy(update={"services_catalog": example})):
        ports.reset()
        update_project(
            session=session,
            actor=world.owner,
            project_id=project.id,
            changes={"backing": [{"name": "mq", "kind": "catalog", "entry": "rabbitmq"}]},
        )
        queue = FakeQueue()
        env_id = _create(session, world, project, queue, "pr-1")
        assert _run(queue) == "failed: not_supported"
        [row] = backing.environment_services(session=session, actor=world.member, environment_id=env_id)
    assert (row["state"], row["variables"]) == ("failed", ["AMQP_URL"])
    assert "no backend for catalog services" in row["reason"]


def test_two_services_of_one_kind_are_relayed_on_their_own_ports(
    session: Session, world: World, project: Project, short_settings: Settings
) -> None:
    assert project.id is not None
    update_project(
        session=session,
        actor=world.owner,
        project_id=project.id,
        changes={
            "backing": [
                {"name": "db", "kind": "postgres"},
                {"name": "stats", "kind": "postgres", "prefix": "STATS_"},
            ]
        },
    )
    queue = FakeQueue()
    assert project.id is not None
    created = create_environment(
        session=session,
        actor=world.member,
        queue=queue,
        project_id=project.id,
        name="pr-1",
        overrides={
            "command": 'printf %s "$DATABASE_URL" > url.out; printf %s "$STATS_DATABASE_URL" > stats.out; '
            "exec python3 -m http.server $PORT"
        },
    )
    assert created.id is not None
    assert _run(queue) == "ready"
    first, second = urlsplit(_file(created.id, "url.out")), urlsplit(_file(created.id, "stats.out"))
    assert (first.port, second.port) == (5432, 5433)
    for url, name in ((first, "db"), (second, "stats")):
        code, out = _inside(created.id, _psql("select current_database()", url=repr(url.geturl())))
        assert (code, out.strip()) == (0, instance_name(created.id, name))
