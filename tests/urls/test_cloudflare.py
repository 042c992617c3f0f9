"""The cloudflare URL provider through the real ``cloudflare`` SDK against the loopback Cloudflare stub.

What Cloudflare ends up holding is read from the stub's state: the tunnel (created
or adopted), its configuration's ingress rules before the catch-all, and one
proxied CNAME per environment, commented with the environment's id. Publishing
twice writes nothing; unpublishing twice is quiet; records and rules that are not
envhub's are never touched; two workers publishing at once keep each other's
rule (and without the lock, they would not: shown too); Cloudflare's 401, 429
and 5xx become envhub's error codes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy.engine import Engine

from envhub import launcher, wiring
from envhub.config import override_settings
from envhub.domain.kube import namespace_for
from envhub.domain.public import GatewayAddress, port_host, wildcard_host
from envhub.domain.specs import EnvironmentTarget
from envhub.domain.url_access import UrlAccess
from envhub.errors import ConfigurationError, EnvhubError
from envhub.integrations.cloudflare import CloudflareAccess, CloudflareClient
from envhub.queue.locks import RedisLocks
from envhub.services import ports, reconciliation
from envhub.urls.cloudflare import CloudflareUrls, Lock
from tests.conftest import build_settings, scrub_envhub_environment
from tests.support.cloudflare_stub import CloudflareStub, cloudflare_stub
from tests.support.db import audit_events, other_session
from tests.support.fakes import FakeQueue
from tests.support.runtime import make_target
from tests.unit.kube.test_kube_workspace import target as workspace_target

ZONE = "example.com"
WEB = {"name": "web", "image": "python:3.12-slim", "ports": [8080], "public": True}


@pytest.fixture(scope="module")
def _served() -> Iterator[CloudflareStub]:
    with cloudflare_stub() as stub:
        yield stub


@pytest.fixture
def stub(_served: CloudflareStub) -> CloudflareStub:
    _served.reset()
    return _served


def client(
    stub: CloudflareStub, *, token: str = "", tunnel_id: str = "", retries: int = 0
) -> CloudflareClient:
    access = CloudflareAccess(
        api_token=token or stub.token,
        account_id=stub.account_id,
        zone=ZONE,
        tunnel_id=tunnel_id,
        base_url=stub.api_url,
        max_retries=retries,
    )
    # The SDK's http_client option: envhub's client works with one it is handed.
    return CloudflareClient(access, http_client=httpx.Client(timeout=10))


def provider(stub: CloudflareStub, *, lock: Lock | None = None, **options: Any) -> CloudflareUrls:
    return CloudflareUrls(api=client(stub, **options), zone=ZONE, lock=lock)


def target(environment_id: int, name: str = "pr-1", **spec: Any) -> EnvironmentTarget:
    return make_target(environment_id, name=name, services=[WEB], **spec)


def host(name: str) -> str:
    return wildcard_host(environment=name, project="shop", team="acme", domain=ZONE)


def the_tunnel(stub: CloudflareStub) -> str:
    [tunnel] = stub.tunnels
    return tunnel


def service_of(environment: EnvironmentTarget) -> str:
    return f"http://web.{namespace_for(environment)}.svc:8080"


def writes(stub: CloudflareStub) -> int:
    return sum(1 for call in stub.calls if call.method in ("POST", "PUT", "PATCH", "DELETE"))


def test_publish_creates_the_tunnel_a_rule_before_the_catch_all_and_a_proxied_record(
    stub: CloudflareStub,
) -> None:
    urls = provider(stub)
    env = target(7, "pr-12")
    url = urls.publish(env)

    assert url == f"https://{host('pr-12')}/" == urls.address(env).url
    assert urls.address(env).ingress is None
    tunnel = the_tunnel(stub)
    assert (stub.tunnels[tunnel].name, stub.tunnels[tunnel].config_src) == ("envhub", "cloudflare")
    assert stub.rules(tunnel) == [
        {"hostname": host("pr-12"), "service": service_of(env)},
        {"service": "http_status:404"},
    ]
    [record] = stub.records.values()
    assert (record["name"], record["type"], record["content"], record["proxied"]) == (
        host("pr-12"),
        "CNAME",
        f"{tunnel}.cfargotunnel.com",
        True,
    )
    assert record["comment"] == "envhub environment 7: pr-12 of acme/shop"

    # Again (a resync, a retried job): nothing is written.
    before = writes(stub)
    assert urls.publish(env) == url
    assert writes(stub) == before
    assert urls.published_environments() == {7}


def test_an_existing_tunnel_is_adopted_and_the_operator_s_rules_kept(stub: CloudflareStub) -> None:
    tunnel = stub.add_tunnel("platform")
    own = {"hostname": "envhub.example.com", "service": "http://envhub-web.envhub-system.svc:3000"}
    catch_all = {"service": "http_status:503"}
    stub.tunnels[tunnel.id].config = {"ingress": [own, catch_all], "originRequest": {"connectTimeout": 10}}
    stub.add_record("envhub.example.com", f"{tunnel.id}.cfargotunnel.com")

    urls = provider(stub, tunnel_id=tunnel.id)
    first, second = target(1, "pr-1"), target(2, "pr-2")
    urls.publish(first)
    urls.publish(second)
    assert list(stub.tunnels) == [tunnel.id]  # nothing created
    assert stub.rules(tunnel.id) == [
        own,
        {"hostname": host("pr-1"), "service": service_of(first)},
        {"hostname": host("pr-2"), "service": service_of(second)},
        catch_all,
    ]
    assert stub.tunnels[tunnel.id].config["originRequest"] == {"connectTimeout": 10}

    urls.unpublish(first)
    assert stub.rules(tunnel.id) == [
        own,
        {"hostname": host("pr-2"), "service": service_of(second)},
        catch_all,
    ]
    assert sorted(r["name"] for r in stub.records.values()) == ["envhub.example.com", host("pr-2")]
    assert urls.published_environments() == {2}


def test_a_tunnel_of_the_configured_name_is_found_not_duplicated(stub: CloudflareStub) -> None:
    existing = stub.add_tunnel("envhub")
    provider(stub).publish(target(3))
    assert list(stub.tunnels) == [existing.id]
    assert stub.count("POST", f"/accounts/{stub.account_id}/cfd_tunnel") == 0


def test_unpublish_removes_both_and_is_quiet_when_nothing_is_there(stub: CloudflareStub) -> None:
    urls = provider(stub)
    env = target(4)
    urls.publish(env)
    urls.unpublish(env)
    tunnel = the_tunnel(stub)
    assert stub.rules(tunnel) == [{"service": "http_status:404"}]
    assert stub.records == {}
    before = writes(stub)
    urls.unpublish(env)
    urls.unpublish(target(99, "never"))
    assert writes(stub) == before


def test_an_environment_without_a_public_service_publishes_nothing(stub: CloudflareStub) -> None:
    urls = provider(stub)
    url = urls.publish(make_target(5, name="batch"))
    assert url == f"https://{host('batch')}/"
    assert stub.records == {}
    assert all(not rule.get("hostname") for rule in stub.rules(the_tunnel(stub)))


def test_a_host_held_by_a_record_or_rule_envhub_did_not_make_is_refused(stub: CloudflareStub) -> None:
    stub.add_record(host("pr-1"), "somewhere.example.net", comment="the marketing site")
    urls = provider(stub)
    with pytest.raises(EnvhubError) as caught:
        urls.publish(target(1, "pr-1"))
    assert caught.value.code == "cloudflare_host_taken"
    assert not caught.value.retryable
    assert [r["content"] for r in stub.records.values()] == ["somewhere.example.net"]

    tunnel = the_tunnel(stub)
    stub.tunnels[tunnel].config = {
        "ingress": [
            {"hostname": host("pr-2"), "service": "http://10.0.0.9:80"},
            {"service": "http_status:404"},
        ]
    }
    with pytest.raises(EnvhubError, match="a rule envhub did not make") as caught:
        urls.publish(target(2, "pr-2"))
    assert caught.value.code == "cloudflare_host_taken"
    # A record of envhub's from another cluster (another tunnel) is not this one's either.
    stub.add_record(host("pr-3"), "0000.cfargotunnel.com", comment="envhub environment 3: pr-3 of acme/shop")
    with pytest.raises(EnvhubError) as caught:
        urls.publish(target(3, "pr-3"))
    assert caught.value.code == "cloudflare_host_taken"


def test_a_recreated_environment_takes_its_name_s_host_over(stub: CloudflareStub) -> None:
    urls = provider(stub)
    old, new = target(10, "pr-1"), target(11, "pr-1")
    urls.publish(old)
    urls.publish(new)  # the old one's unpublish has not run yet
    assert stub.rules(the_tunnel(stub))[:-1] == [{"hostname": host("pr-1"), "service": service_of(new)}]
    [record] = stub.records.values()
    assert record["comment"].startswith("envhub environment 11:")
    urls.unpublish(old)  # late: takes nothing of the new one's
    assert urls.published_environments() == {11}


def publish_together(urls: list[CloudflareUrls], targets: list[EnvironmentTarget]) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(len(targets))

    def run(provider: CloudflareUrls, env: EnvironmentTarget) -> None:
        start.wait()
        try:
            provider.publish(env)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=pair) for pair in zip(urls, targets, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return errors


def test_concurrent_publishes_keep_each_other_s_rules_under_the_redis_lock(
    stub: CloudflareStub, redis_url: str
) -> None:
    provider(stub).api.tunnel_id()  # the tunnel exists (two creators would make two)
    tunnel = the_tunnel(stub)
    stub.delay = 0.3  # each configuration read is answered late: the race window is wide
    # Three workers, each with its own client, sharing only Redis.
    workers = [provider(stub, lock=RedisLocks(redis_url), tunnel_id=tunnel) for _ in range(3)]
    envs = [target(i, f"pr-{i}") for i in (1, 2, 3)]
    assert publish_together(workers, envs) == []
    assert sorted(rule.get("hostname", "") for rule in stub.rules(tunnel)) == sorted(
        ["", host("pr-1"), host("pr-2"), host("pr-3")]
    )
    assert len(stub.records) == 3


def test_without_the_lock_a_concurrent_publish_loses_a_rule(stub: CloudflareStub) -> None:
    """Why the lock: Cloudflare replaces the configuration whole, with no precondition."""
    provider(stub).api.tunnel_id()
    tunnel = the_tunnel(stub)
    stub.delay = 0.3

    @contextlib.contextmanager
    def no_lock(name: str) -> Iterator[None]:
        yield

    workers = [provider(stub, lock=no_lock, tunnel_id=tunnel) for _ in range(2)]
    assert publish_together(workers, [target(1, "pr-1"), target(2, "pr-2")]) == []
    assert len(stub.rules(tunnel)) == 2  # one rule and the catch-all: the other worker's rule is lost


@pytest.mark.parametrize(
    ("status", "code", "retryable"),
    [
        (401, "cloudflare_unauthorized", False),
        (429, "cloudflare_rate_limited", True),
        (500, "cloudflare_unavailable", True),
        (503, "cloudflare_unavailable", True),
    ],
)
def test_cloudflare_s_errors_become_envhub_s(
    stub: CloudflareStub, status: int, code: str, retryable: bool
) -> None:
    urls = provider(stub)
    urls.api.tunnel_id()
    stub.fail(status, path="/zones", retry_after=7 if status == 429 else None)
    with pytest.raises(EnvhubError) as caught:
        urls.publish(target(1))
    assert (caught.value.code, caught.value.retryable) == (code, retryable)
    if status == 429:
        assert caught.value.details == {"retry_after": 7.0}


def test_a_wrong_token_is_unauthorized_and_a_passing_outage_is_retried_by_the_sdk(
    stub: CloudflareStub,
) -> None:
    with pytest.raises(EnvhubError) as caught:
        provider(stub, token="not-the-token").publish(target(1))
    assert caught.value.code == "cloudflare_unauthorized"
    assert "Authentication error" in caught.value.message

    stub.fail(502, times=1, method="PUT")
    assert provider(stub, retries=1).publish(target(1)).startswith("https://")
    assert stub.count("PUT") == 2


def test_the_reconciler_withdraws_what_belongs_to_no_environment(
    stub: CloudflareStub, db: Engine, monkeypatch: pytest.MonkeyPatch, settings: object
) -> None:
    urls = provider(stub)
    for env in (target(501, "gone-a"), target(502, "gone-b")):
        urls.publish(env)
    stub.add_record("www.example.com", "example.pages.dev", comment="not envhub's")
    monkeypatch.setattr(reconciliation, "_last_sweep", [])

    with other_session(db) as session:
        report = reconciliation.reconcile(
            session=session, queue=FakeQueue(), runtime=ports.runtime(), urls=urls
        )
    assert report.urls_withdrawn == [501, 502]
    assert [r["name"] for r in stub.records.values()] == ["www.example.com"]
    assert stub.rules(the_tunnel(stub)) == [{"service": "http_status:404"}]
    assert sorted(e.target_id or 0 for e in audit_events(db, "environment.url_orphan_removed")) == [501, 502]

    # Within the sweep interval the next pass asks Cloudflare nothing.
    calls = len(stub.calls)
    with other_session(db) as session:
        reconciliation.reconcile(session=session, queue=FakeQueue(), runtime=ports.runtime(), urls=urls)
    assert len(stub.calls) == calls


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"url_provider": "cloudflare"}, "needs ENVHUB_RUNTIME=kubernetes"),
        ({"url_provider": "cloudflare", "runtime": "kubernetes"}, "ENVHUB_CLOUDFLARE_API_TOKEN: required"),
        (
            {"url_provider": "cloudflare", "runtime": "kubernetes", "cloudflare_api_token": "t"},
            "ENVHUB_CLOUDFLARE_ACCOUNT_ID: required",
        ),
        (
            {
                "url_provider": "cloudflare",
                "runtime": "kubernetes",
                "cloudflare_api_token": "t",
                "cloudflare_account_id": "0" * 32,
            },
            "ENVHUB_CLOUDFLARE_ZONE: required",
        ),
        ({"cloudflare_account_id": "acme"}, "not a Cloudflare account id"),
        ({"cloudflare_tunnel_id": "tunnel-1"}, "not a tunnel id"),
        ({"cloudflare_zone": "localhost"}, "not a DNS name"),
        ({"cloudflare_api_url": "http://api.example.com/client/v4"}, "https://"),
        ({"cloudflare_tunnel_name": " "}, "must not be empty"),
    ],
)
def test_bad_cloudflare_settings_are_refused(values: dict[str, str], message: str, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=message):
        build_settings(data_dir=tmp_path, **values)


def test_wiring_picks_the_cloudflare_provider(tmp_path: Path, stub: CloudflareStub) -> None:
    chosen = build_settings(
        data_dir=tmp_path,
        runtime="kubernetes",
        url_provider="cloudflare",
        cloudflare_api_token=stub.token,
        cloudflare_account_id=stub.account_id,
        cloudflare_zone="Example.com.",
        cloudflare_api_url=stub.api_url,
    )
    assert chosen.cloudflare_zone == ZONE
    wiring.install()
    try:
        with override_settings(chosen):
            ports.reset()
            urls = ports.url_provider()
            assert isinstance(urls, CloudflareUrls)
            assert urls.address(target(1)).url == f"https://{host('pr-1')}/"
            assert urls.publish(target(1)) == f"https://{host('pr-1')}/"
            assert urls.published_environments() == {1}
    finally:
        ports.reset()


def test_the_launcher_finds_or_creates_the_tunnel_and_prints_its_token(
    stub: CloudflareStub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    scrub_envhub_environment(monkeypatch)
    monkeypatch.chdir(tmp_path)
    for name, value in {
        "DATA_DIR": str(tmp_path / "data"),
        "RUNTIME": "kubernetes",
        "URL_PROVIDER": "cloudflare",
        "CLOUDFLARE_API_URL": stub.api_url,
        "CLOUDFLARE_API_TOKEN": stub.token,
        "CLOUDFLARE_ACCOUNT_ID": stub.account_id,
        "CLOUDFLARE_ZONE": ZONE,
    }.items():
        monkeypatch.setenv(f"ENVHUB_{name}", value)
    assert launcher.main(["cloudflare-tunnel"]) == 0
    tunnel = the_tunnel(stub)
    assert capsys.readouterr().out.strip() == tunnel
    assert launcher.main(["cloudflare-tunnel", "--token"]) == 0
    assert capsys.readouterr().out.strip() == stub.tunnels[tunnel].token
    assert list(stub.tunnels) == [tunnel]  # found by name the second time

    monkeypatch.setenv("ENVHUB_CLOUDFLARE_API_TOKEN", "wrong")
    assert launcher.main(["cloudflare-tunnel"]) == 1
    assert "cloudflare_unauthorized" in capsys.readouterr().err


def test_a_sign_in_project_s_rule_goes_to_envhub_s_gateway_and_stays_attributed(stub: CloudflareStub) -> None:
    gateway = GatewayAddress(host="envhub-web.envhub.svc", port=8000)
    urls = CloudflareUrls(api=client(stub), zone=ZONE, gateway=gateway)
    env = dataclasses.replace(target(9, "pr-3"), url_access=UrlAccess.sign_in)
    address = urls.address(env)
    assert address.gateway == gateway
    assert address.url == urls.address(target(9, "pr-3")).url  # the same URL either way
    urls.publish(env)
    assert stub.rules(the_tunnel(stub))[0] == {
        "hostname": host("pr-3"),
        "service": f"http://envhub-gateway.{namespace_for(env)}.svc:8000",
    }
    # Still the environment's rule: the orphan sweep and withdraw find it by its namespace.
    assert urls.published_environments() == {9}
    urls.publish(target(9, "pr-3"))  # public again: straight to the environment's Service
    assert stub.rules(the_tunnel(stub))[0]["service"] == service_of(target(9, "pr-3"))
    urls.withdraw(9)
    assert urls.published_environments() == set()


def test_a_sign_in_project_needs_to_know_where_the_gateway_is(stub: CloudflareStub) -> None:
    env = dataclasses.replace(target(9, "pr-3"), url_access=UrlAccess.sign_in)
    with pytest.raises(ConfigurationError, match="ENVHUB_GATEWAY_INTERNAL_URL"):
        provider(stub).address(env)


def test_a_workspace_s_app_and_each_forwarded_port_get_a_rule_and_a_record(stub: CloudflareStub) -> None:
    urls = provider(stub)
    env = workspace_target()  # no container services: the workspace serves the app on 8000
    ns = namespace_for(env)
    debugger = port_host(host("dev"), 5678)
    assert urls.port_url(env, 5678) == f"https://{debugger}/"
    assert urls.publish(env) == f"https://{host('dev')}/"
    tunnel = the_tunnel(stub)
    assert stub.rules(tunnel) == [
        {"hostname": host("dev"), "service": f"http://workspace.{ns}.svc:8000"},
        {"hostname": debugger, "service": f"http://workspace.{ns}.svc:5678"},
        {"service": "http_status:404"},
    ]
    assert {r["name"]: r["comment"] for r in stub.records.values()} == {
        host("dev"): "envhub environment 7: dev of acme/shop",
        debugger: "envhub environment 7: dev of acme/shop, port 5678 (Debugger)",
    }
    assert {r["content"] for r in stub.records.values()} == {f"{tunnel}.cfargotunnel.com"}
    before = writes(stub)
    urls.publish(env)
    assert writes(stub) == before

    # The port is no longer forwarded: its rule and record go, the app's stay.
    assert env.workspace is not None
    config = dataclasses.replace(env.workspace.config, ports=env.workspace.config.ports[:1])
    urls.publish(dataclasses.replace(env, workspace=dataclasses.replace(env.workspace, config=config)))
    assert [rule.get("hostname") for rule in stub.rules(tunnel)] == [host("dev"), None]
    assert [r["name"] for r in stub.records.values()] == [host("dev")]

    urls.publish(env)
    urls.unpublish(env)
    assert stub.records == {}
    assert stub.rules(tunnel) == [{"service": "http_status:404"}]


def test_beside_container_services_every_forwarded_port_gets_its_own_host(stub: CloudflareStub) -> None:
    gateway = GatewayAddress(host="envhub-web.envhub.svc", port=8000)
    urls = CloudflareUrls(api=client(stub), zone=ZONE, gateway=gateway)
    env = workspace_target(services=[WEB])
    urls.publish(env)
    ns = namespace_for(env)
    tunnel = the_tunnel(stub)
    assert stub.rules(tunnel)[:3] == [
        {"hostname": host("dev"), "service": f"http://web.{ns}.svc:8080"},
        {"hostname": port_host(host("dev"), 8000), "service": f"http://workspace.{ns}.svc:8000"},
        {"hostname": port_host(host("dev"), 5678), "service": f"http://workspace.{ns}.svc:5678"},
    ]
    # A sign-in project's hosts, the ports' too, go to envhub's gateway, which asks for the pass.
    urls.publish(dataclasses.replace(env, url_access=UrlAccess.sign_in))
    relay = f"http://envhub-gateway.{ns}.svc:8000"
    assert {rule["service"] for rule in stub.rules(tunnel)[:3]} == {relay}
    assert len(stub.records) == 3
    assert urls.published_environments() == {7}
