"""The cloudflare URL provider with a real worker on the real test apiserver.

The worker converges the environment into the cluster and publishes it at the
loopback Cloudflare stub through the real SDK: the environment gets its https
URL (and every container ``ENVHUB_PUBLIC_URL``), the tunnel routes the host to
the environment's public Service in its namespace, the zone holds the proxied
CNAME; deleting the environment removes both. The worker's reconciler sweeps a
record and a rule left behind for an environment envhub does not know.
(No cloudflared runs here: the chart's connector is tested in tests/deploy.)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from envhub.config import Settings
from envhub.domain.phases import Phase
from envhub.services import ports
from envhub.services.environments import create_environment, delete_environment
from tests.kube.helpers import Kube, KubeWorkers
from tests.kube.test_lifecycle import shop, wait_phase
from tests.support.cloudflare_stub import CloudflareStub, cloudflare_stub
from tests.support.waiting import wait_for
from tests.support.world import World

pytestmark = pytest.mark.kube

ZONE = "example.com"


@pytest.fixture
def stub() -> Iterator[CloudflareStub]:
    with cloudflare_stub() as served:
        yield served


@pytest.fixture
def cloudflare_workers(
    kube_settings: Settings, tmp_path: Path, stub: CloudflareStub
) -> Iterator[KubeWorkers]:
    pool = KubeWorkers(
        kube_settings,
        tmp_path,
        ENVHUB_URL_PROVIDER="cloudflare",
        ENVHUB_CLOUDFLARE_API_URL=stub.api_url,
        ENVHUB_CLOUDFLARE_API_TOKEN=stub.token,
        ENVHUB_CLOUDFLARE_ACCOUNT_ID=stub.account_id,
        ENVHUB_CLOUDFLARE_ZONE=ZONE,
        ENVHUB_URL_SWEEP_INTERVAL="0",
    )
    yield pool
    pool.stop_all()


@pytest.mark.slow
def test_an_environment_gets_its_https_url_through_the_tunnel_and_loses_it_on_delete(
    session: Session,
    world: World,
    db: Engine,
    cloudflare_workers: KubeWorkers,
    kube: Kube,
    stub: CloudflareStub,
) -> None:
    project, web = shop(session, world)
    assert project.id is not None
    # A record and a rule of envhub's for an environment that does not exist: the sweep's.
    tunnel = stub.add_tunnel("envhub")
    orphan_host = f"gone-shop-00000000.{ZONE}"
    stub.tunnels[tunnel.id].config = {
        "ingress": [
            {"hostname": orphan_host, "service": "http://web.envhub-acme-shop-gone-999999.svc:8080"},
            {"hostname": "envhub.example.com", "service": "http://envhub-web.envhub-system.svc:80"},
            {"service": "http_status:404"},
        ]
    }
    stub.add_record(orphan_host, f"{tunnel.id}.cfargotunnel.com", comment="envhub environment 999999: gone")

    cloudflare_workers.start()
    env = create_environment(
        session=session, actor=world.member, queue=ports.queue(), project_id=project.id, name="pr-7"
    )
    assert env.id is not None
    ready = wait_phase(db, env.id, Phase.ready, cloudflare_workers)
    ns = f"envhub-acme-shop-pr-7-{env.id}"

    [record] = [r for r in stub.records.values() if r["name"] != orphan_host] or [None]
    assert record is not None, stub.records
    host = record["name"]
    assert host.startswith("pr-7-shop-")
    assert host.endswith(f".{ZONE}")
    assert ready.public_url == f"https://{host}/"
    assert (record["type"], record["content"], record["proxied"]) == (
        "CNAME",
        f"{tunnel.id}.cfargotunnel.com",
        True,
    )
    assert record["comment"].startswith(f"envhub environment {env.id}:")
    assert {"hostname": host, "service": f"http://web.{ns}.svc:{web['ports'][0]}"} in stub.rules(tunnel.id)

    deployment = kube.get(f"/apis/apps/v1/namespaces/{ns}/deployments/web")
    assert deployment is not None
    env_vars = {e["name"]: e["value"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env_vars["ENVHUB_PUBLIC_URL"] == ready.public_url

    # The reconciler (every pass here) withdrew the orphan's, and kept the operator's rule.
    def swept() -> bool:
        return orphan_host not in {r["name"] for r in stub.records.values()} and all(
            rule.get("hostname") != orphan_host for rule in stub.rules(tunnel.id)
        )

    wait_for(
        swept, timeout=30, what="the orphan's record and rule withdrawn", describe=cloudflare_workers.log_tail
    )

    session.expire_all()
    delete_environment(session=session, actor=world.member, queue=ports.queue(), environment_id=env.id)
    wait_phase(db, env.id, Phase.deleted, cloudflare_workers)
    assert kube.namespace_gone(ns)
    assert stub.records == {}
    assert stub.rules(tunnel.id) == [
        {"hostname": "envhub.example.com", "service": "http://envhub-web.envhub-system.svc:80"},
        {"service": "http_status:404"},
    ]
