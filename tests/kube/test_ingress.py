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

from envhub.config import Settings, override_settings
from envhub.domain.kube import namespace_for
from envhub.domain.phases import Phase
from envhub.domain.public import GatewayAddress
from envhub.domain.specs import EnvironmentTarget
from envhub.domain.url_access import UrlAccess
from envhub.runtime.kubernetes import KubernetesRuntime
from envhub.services import ports
from envhub.services.environments import create_environment, delete_environment
from envhub.services.projects import update_project
from envhub.urls.ingress import IngressUrls
from tests.conftest import build_settings
from tests.kube.helpers import Kube, KubeWorkers, web_service
from tests.kube.test_lifecycle import shop, wait_phase
from tests.support.runtime import RecordingProgress
from tests.support.waiting import wait_for
from tests.support.world import World

pytestmark = pytest.mark.kube

MakeEnv = Callable[..., EnvironmentTarget]
DOMAIN = "preview.example.test"


def with_ingress(target: EnvironmentTarget, urls: IngressUrls) -> EnvironmentTarget:
    address = urls.address(target)
    return dataclasses.replace(
        target, public_url=address.url, ingress=address.ingress, gateway=address.gateway
    )


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


GATEWAY = GatewayAddress(host="envhub-web.envhub.svc", port=8000)


def backend_of(kube: Kube, ns: str) -> dict[str, Any]:
    ingress = ingress_of(kube, ns)
    assert ingress is not None
    return dict(ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"])


def test_a_sign_in_project_s_ingress_sends_its_host_to_envhub_s_gateway(
    runtime: KubernetesRuntime, kube: Kube, make_env: MakeEnv
) -> None:
    urls = IngressUrls(domain=DOMAIN, gateway=GATEWAY)
    web = web_service()
    public = with_ingress(make_env(services=[web]), urls)
    guarded = with_ingress(dataclasses.replace(public, url_access=UrlAccess.sign_in), urls)
    assert guarded.public_url == public.public_url  # the same URL either way
    runtime.apply(guarded, progress=RecordingProgress())
    ns = namespace_for(guarded)

    service = kube.get(f"/api/v1/namespaces/{ns}/services/envhub-gateway")
    assert service is not None
    assert service["spec"]["type"] == "ExternalName"
    assert service["spec"]["externalName"] == "envhub-web.envhub.svc"
    assert [port["port"] for port in service["spec"]["ports"]] == [8000]
    assert service["metadata"]["labels"]["envhub.dev/environment"] == str(guarded.id)
    assert backend_of(kube, ns) == {"name": "envhub-gateway", "port": {"number": 8000}}

    # Public again: straight to the environment's Service, the gateway's pruned.
    runtime.apply(public, progress=RecordingProgress())
    assert backend_of(kube, ns) == {"name": "web", "port": {"number": web["ports"][0]}}
    assert kube.get(f"/api/v1/namespaces/{ns}/services/envhub-gateway") is None


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


@pytest.mark.slow
def test_making_a_project_s_urls_need_sign_in_reroutes_its_ready_environments(
    session: Session, world: World, db: Engine, kube_settings: Settings, tmp_path: Path, kube: Kube
) -> None:
    workers = KubeWorkers(
        kube_settings,
        tmp_path,
        ENVHUB_URL_PROVIDER="ingress",
        ENVHUB_INGRESS_DOMAIN=DOMAIN,
        ENVHUB_GATEWAY_INTERNAL_URL="http://envhub-web.envhub.svc:8000",
    )
    project, _web = shop(session, world)
    assert project.id is not None
    try:
        workers.start()
        env = create_environment(
            session=session, actor=world.member, queue=ports.queue(), project_id=project.id, name="pr-8"
        )
        assert env.id is not None
        wait_phase(db, env.id, Phase.ready, workers)
        ns = f"envhub-acme-shop-pr-8-{env.id}"
        assert backend_of(kube, ns)["name"] == "web"

        gateway_url = "http://envhub-web.envhub.svc:8000"
        as_workers = build_settings(
            **{
                **kube_settings.model_dump(),
                "url_provider": "ingress",
                "ingress_domain": DOMAIN,
                "gateway_internal_url": gateway_url,
            }
        )
        with override_settings(as_workers):
            ports.reset()
            changed = update_project(
                session=session,
                actor=world.owner,
                project_id=project.id,
                changes={"url_access": "sign_in"},
            )
        assert changed.url_access == "sign_in"
        # A resync run, committed with the change and dispatched by the reconciler.
        wait_for(
            lambda: backend_of(kube, ns)["name"] == "envhub-gateway",
            timeout=60,
            what="the Ingress to point at envhub's gateway",
        )
        assert kube.get(f"/api/v1/namespaces/{ns}/services/envhub-gateway") is not None
    finally:
        ports.reset()
        workers.stop_all()
