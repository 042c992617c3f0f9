"""A catalog service on the real test apiserver: the operator's RabbitMQ entry, per environment.

The shipped example catalog (deploy/catalog.example.yaml) is the operator's
file; a project declares a RabbitMQ from it with a parameter. Through the
services and real workers, the environment's namespace gets the entry's
Secret, Service and Deployment (server-side applied, the API server's own
validation), its workloads get ``AMQP_URL`` with the generated password in
their Secret, and removing the service from the project prunes the objects.
Declarations the catalog cannot honour are refused when they are made.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from envhub.config import Settings, override_settings
from envhub.errors import ValidationFailed
from envhub.models import InstanceState, ServiceInstance
from envhub.services import backing, ports
from envhub.services.environments import create_environment
from envhub.services.projects import create_project, update_project
from tests.kube.helpers import Kube, KubeWorkers, web_service
from tests.kube.test_managed_redis import settled
from tests.support.db import fetch_all
from tests.support.waiting import wait_for
from tests.support.world import World

pytestmark = pytest.mark.kube

CATALOG = Path(__file__).resolve().parents[2] / "deploy" / "catalog.example.yaml"
MQ = {"name": "mq", "kind": "catalog", "entry": "rabbitmq", "parameters": {"version": "3.12"}}


@pytest.fixture
def catalog_settings(kube_settings: Settings) -> Iterator[Settings]:
    with override_settings(kube_settings.model_copy(update={"services_catalog": CATALOG})) as configured:
        ports.reset()
        yield configured
    ports.reset()


@pytest.fixture
def catalog_workers(catalog_settings: Settings, tmp_path: Path) -> Iterator[KubeWorkers]:
    pool = KubeWorkers(catalog_settings, tmp_path, ENVHUB_SERVICES_CATALOG=str(CATALOG))
    yield pool
    pool.stop_all()


def _secret_value(secret: dict[str, Any], key: str) -> str:
    return base64.b64decode(secret["data"][key]).decode()


@pytest.mark.slow
def test_an_environment_gets_a_rabbitmq_from_the_catalog_and_loses_it_with_the_service(
    session: Session, world: World, db: Engine, catalog_workers: KubeWorkers, kube: Kube
) -> None:
    project = create_project(
        session=session,
        actor=world.owner,
        team_id=world.acme,
        name="shop",
        workloads={"services": [web_service()]},
        backing=[MQ],
    )
    assert project.id is not None
    catalog_workers.start()
    env = create_environment(
        session=session, actor=world.member, queue=ports.queue(), project_id=project.id, name="pr-1"
    )
    assert env.id is not None
    env_id = env.id
    settled(db, env_id, catalog_workers)
    [ns] = kube.live_namespaces(env_id)

    [row] = fetch_all(db, ServiceInstance)
    assert (row.state, row.backend) == (InstanceState.ready, "catalog")
    assert row.reason == "3 objects of catalog entry rabbitmq"
    deployment = kube.get(f"/apis/apps/v1/namespaces/{ns}/deployments/envhub-mq")
    service = kube.get(f"/api/v1/namespaces/{ns}/services/envhub-mq")
    secret = kube.get(f"/api/v1/namespaces/{ns}/secrets/envhub-mq")
    assert deployment is not None
    assert service is not None
    assert secret is not None
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "docker.io/library/rabbitmq:3.12-alpine"
    assert deployment["metadata"]["labels"]["envhub.dev/environment"] == str(env_id)
    app = kube.get(f"/api/v1/namespaces/{ns}/secrets/envhub-secrets")
    assert app is not None
    url = urlsplit(_secret_value(app, "AMQP_URL"))
    assert (url.scheme, url.hostname, url.port, url.username) == (
        "amqp",
        f"envhub-mq.{ns}.svc",
        5672,
        "envhub",
    )
    password = unquote(url.password or "")
    assert len(password) >= 20
    assert _secret_value(secret, "RABBITMQ_DEFAULT_PASS") == password
    [listed] = backing.environment_services(session=session, actor=world.member, environment_id=env_id)
    assert (listed["kind_label"], listed["variables"], listed["state"]) == (
        "rabbitmq (catalog)",
        ["AMQP_URL"],
        "ready",
    )

    # The service goes: the resync prunes its objects with the environment's others.
    update_project(session=session, actor=world.owner, project_id=project.id, changes={"backing": []})
    wait_for(
        lambda: kube.get(f"/apis/apps/v1/namespaces/{ns}/deployments/envhub-mq") is None,
        timeout=60,
        what="the catalog objects pruned by the resync",
        describe=catalog_workers.log_tail,
    )
    settled(db, env_id, catalog_workers)
    assert kube.get(f"/api/v1/namespaces/{ns}/secrets/envhub-mq") is None
    app = kube.get(f"/api/v1/namespaces/{ns}/secrets/envhub-secrets")
    assert app is None or "AMQP_URL" not in app.get("data", {})  # no variable left: no Secret


def test_a_declaration_the_catalog_cannot_honour_is_refused_when_made(
    session: Session, world: World, catalog_settings: Settings
) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({**MQ, "entry": "kafka"}, "the catalog has no entry 'kafka'"),
        ({**MQ, "parameters": {"version": "latest"}}, "not a valid version"),
        ({**MQ, "parameters": {"plugins": "x"}}, "has no parameter plugins"),
    ]
    for declaration, says in cases:
        with pytest.raises(ValidationFailed) as refused:
            create_project(
                session=session, actor=world.owner, team_id=world.acme, name="shop", backing=[declaration]
            )
        assert says in refused.value.message
    with pytest.raises(ValidationFailed) as clash:
        create_project(
            session=session,
            actor=world.owner,
            team_id=world.acme,
            name="shop",
            env={"AMQP_URL": "amqp://elsewhere/"},
            backing=[MQ],
        )
    assert "would set AMQP_URL, which the project already sets" in clash.value.message
    prefixed = create_project(
        session=session,
        actor=world.owner,
        team_id=world.acme,
        name="shop",
        env={"AMQP_URL": "amqp://elsewhere/"},
        backing=[{**MQ, "prefix": "JOBS_"}],
    )
    assert prefixed.backing[0]["prefix"] == "JOBS_"


def test_without_a_catalog_a_catalog_service_is_refused_saying_so(
    session: Session, world: World, kube_settings: Settings
) -> None:
    with pytest.raises(ValidationFailed) as refused:
        create_project(session=session, actor=world.owner, team_id=world.acme, name="shop", backing=[MQ])
    assert refused.value.message == "this envhub has no catalog of other services"
