"""The ingress URL provider on the real test apiserver: an Ingress per environment, applied, pruned, deleted.

The test cluster has no ingress controller, so nothing answers at the https
URL here; what is shown is what envhub asks of the cluster: the Ingress the API
server accepted (its validation is real), with envhub's labels, server-side
applied with the other objects, gone when the provider no longer asks for it,
and gone with the environment.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from envhub.config import Settings
from envhub.domain.kube import namespace_for
from envhub.domain.phases import Phase
from envhub.domain.specs import EnvironmentTarget
from envhub.runtime.kubernetes import KubernetesRuntime
from envhub.services import ports
from envhub.services.environments import create_environment, delete_environment
from envhub.urls.ingress import IngressUrls
from tests.kube.helpers import Kube, KubeWorkers, web_service
from tests.kube.test_lifecycle import shop, wait_phase
from tests.support.runtime import RecordingProgress
from tests.support.world import World

pytestmark = pytest.mark.kube

MakeEnv = Callable[..., EnvironmentTarget]
DOMAIN = "preview.example.test"


def with_ingress(target: EnvironmentTarget, urls: IngressUrls) -> EnvironmentTarget:
    address = urls.address(target)
    return dataclasses.replace(target, public_url=address.url, ingress=address.ingress)


def ingress_of(kube: Kube, ns: str) -> dict[str, Any] | None:
    return kube.get(f"/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses/envhub-public")


def test_the_ingress_is_applied_with_the_environment_and_pruned_when_no_longer_asked_for(
    runtime: KubernetesRuntime, kube: Kube, make_env: MakeEnv
) -> None:
    urls = IngressUrls(domain=DOMAIN, class_name="nginx", cluster_issuer="letsencrypt")
    web = web_service()
    target = with_ingress(make_env(services=[web]), urls)
    runtime.apply(target, progress=RecordingProgress())
    ns = namespace_for(target)

    ingress = ingress_of(kube, ns)
    assert ingress is not None
    labels = ingress["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "envhub"
    assert labels["envhub.dev/environment"] == str(target.id)
    assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt"
    assert target.ingress is not None
    host = target.ingress.host
    assert target.public_url == f"https://{host}/"
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [{"hosts": [host], "secretName": "envhub-public-tls"}]
    [rule] = ingress["spec"]["rules"]
    assert rule["host"] == host
    assert rule["http"]["paths"][0]["backend"]["service"] == {
        "name": "web",
        "port": {"number": web["ports"][0]},
    }
    managers = {entry["manager"] for entry in ingress["metadata"]["managedFields"]}
    assert all(entry["operation"] == "Apply" for entry in ingress["metadata"]["managedFields"]), managers

    # Again: nothing changes (server-side apply of the same object).
    version = ingress["metadata"]["resourceVersion"]
    runtime.apply(target, progress=RecordingProgress())
    again = ingress_of(kube, ns)
    assert again is not None
    assert again["metadata"]["resourceVersion"] == version

    # A wildcard certificate Secret instead of cert-manager: the Ingress follows.
    wildcard = with_ingress(target, IngressUrls(domain=DOMAIN, tls_secret="wildcard-preview"))
    runtime.apply(wildcard, progress=RecordingProgress())
    changed = ingress_of(kube, ns)
    assert changed is not None
    assert changed["spec"]["tls"] == [{"hosts": [host], "secretName": "wildcard-preview"}]
    assert "ingressClassName" not in changed["spec"]
    assert "cert-manager.io/cluster-issuer" not in (changed["metadata"].get("annotations") or {})

    # The provider no longer asks for one (switched to local URLs): pruned.
    runtime.apply(dataclasses.replace(target, ingress=None), progress=RecordingProgress())
    assert ingress_of(kube, ns) is None


@pytest.fixture
def ingress_workers(kube_settings: Settings, tmp_path: Path) -> KubeWorkers:
    return KubeWorkers(
        kube_settings,
        tmp_path,
        ENVHUB_URL_PROVIDER="ingress",
        ENVHUB_INGRESS_DOMAIN=DOMAIN,
        ENVHUB_INGRESS_CLASS="nginx",
    )


@pytest.mark.slow
def test_an_environment_gets_its_https_url_from_its_ingress_and_loses_both_on_delete(
    session: Session, world: World, db: Engine, ingress_workers: KubeWorkers, kube: Kube
) -> None:
    project, _web = shop(session, world)
    assert project.id is not None
    try:
        ingress_workers.start()
        env = create_environment(
            session=session, actor=world.member, queue=ports.queue(), project_id=project.id, name="pr-7"
        )
        assert env.id is not None
        ready = wait_phase(db, env.id, Phase.ready, ingress_workers)
        ns = f"envhub-acme-shop-pr-7-{env.id}"
        ingress = ingress_of(kube, ns)
        assert ingress is not None
        host = ingress["spec"]["rules"][0]["host"]
        assert host.startswith("pr-7-shop-")
        assert host.endswith(f".{DOMAIN}")
        assert ready.public_url == f"https://{host}/"
        deployment = kube.get(f"/apis/apps/v1/namespaces/{ns}/deployments/web")
        assert deployment is not None
        env_vars = {
            e["name"]: e["value"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        assert env_vars["ENVHUB_PUBLIC_URL"] == ready.public_url

        session.expire_all()
        delete_environment(session=session, actor=world.member, queue=ports.queue(), environment_id=env.id)
        wait_phase(db, env.id, Phase.deleted, ingress_workers)
        assert kube.namespace_gone(ns)
        assert (
            kube.items(
                "/apis/networking.k8s.io/v1/ingresses", labelSelector=f"envhub.dev/environment={env.id}"
            )
            == []
        )
    finally:
        ingress_workers.stop_all()
