"""An environment's Ingress when its workspace forwards ports: a host per port beside the app's."""

from __future__ import annotations

import dataclasses
from typing import Any

from envhub.domain.kube import render_environment
from envhub.domain.kube.gateway import GATEWAY_SERVICE
from envhub.domain.kube.ingress import INGRESS_NAME
from envhub.domain.kube.workspace import WORKSPACE
from envhub.domain.naming import is_label
from envhub.domain.public import GatewayAddress, is_wildcard_host, port_host, port_host_parts, wildcard_host
from envhub.domain.url_access import UrlAccess
from envhub.urls.ingress import IngressUrls
from tests.unit.kube.test_kube_workspace import by_kind, target

DOMAIN = "preview.example.com"
NAMESPACE = "envhub-shop-dev-7"
WEB = {"name": "web", "image": "shop:1", "ports": [8080], "public": True}


def routed(made: Any, *, gateway: GatewayAddress | None = None) -> Any:
    address = IngressUrls(domain=DOMAIN, gateway=gateway).address(made)
    return dataclasses.replace(made, public_url=address.url, ingress=address.ingress, gateway=address.gateway)


def backends(objects: list[dict[str, Any]]) -> dict[str, tuple[str, int]]:
    ingress = by_kind(objects, "Ingress", INGRESS_NAME)
    assert ingress["spec"]["tls"][0]["hosts"] == [rule["host"] for rule in ingress["spec"]["rules"]]
    found = {}
    for rule in ingress["spec"]["rules"]:
        [path] = rule["http"]["paths"]
        service = path["backend"]["service"]
        found[rule["host"]] = (service["name"], service["port"]["number"])
    return found


def test_a_port_s_host_is_the_environment_s_with_the_port_in_front() -> None:
    host = wildcard_host(environment="dev", project="shop", team="acme", domain=DOMAIN)
    assert port_host(host, 5678) == f"5678-{host}"
    assert port_host_parts(port_host(host, 5678)) == (5678, host.split(".")[0][-8:])
    assert is_wildcard_host(port_host(host, 5678), DOMAIN)  # the gateway takes it for a tunnel/Ingress host
    # The longest names: still one label of at most 63 characters, the digest kept.
    longest = wildcard_host(environment="e" * 63, project="p" * 63, team="t" * 63, domain=DOMAIN)
    label = port_host(longest, 65535).split(".")[0]
    assert len(label) == 63
    assert is_label(label)
    assert label.startswith("65535-eee")
    assert label.endswith(longest.split(".")[0][-9:])
    assert port_host_parts("dev-shop-0123abcd." + DOMAIN) is None
    assert port_host_parts("70000-dev-shop-0123abcd." + DOMAIN) is None


def test_the_app_s_host_goes_to_the_workspace_and_each_other_port_has_its_own() -> None:
    made = routed(target())
    objects = render_environment(made, namespace=NAMESPACE)
    assert made.ingress is not None
    host = made.ingress.host
    assert backends(objects) == {host: (WORKSPACE, 8000), port_host(host, 5678): (WORKSPACE, 5678)}
    assert IngressUrls(domain=DOMAIN).port_url(made, 5678) == f"https://{port_host(host, 5678)}/"


def test_beside_container_services_every_forwarded_port_has_its_own_host() -> None:
    made = routed(target(services=[WEB]))
    assert made.ingress is not None
    host = made.ingress.host
    assert backends(render_environment(made, namespace=NAMESPACE)) == {
        host: ("web", 8080),
        port_host(host, 8000): (WORKSPACE, 8000),
        port_host(host, 5678): (WORKSPACE, 5678),
    }
    # No public service: the ports' hosts still are routed.
    private = routed(target(services=[{**WEB, "public": False}]))
    assert set(backends(render_environment(private, namespace=NAMESPACE))) == {
        port_host(host, 8000),
        port_host(host, 5678),
    }


def test_a_sign_in_project_s_hosts_all_go_to_envhub_s_gateway() -> None:
    gateway = GatewayAddress(host="envhub-web.envhub.svc", port=8000)
    made = routed(dataclasses.replace(target(), url_access=UrlAccess.sign_in), gateway=gateway)
    objects = render_environment(made, namespace=NAMESPACE)
    assert set(backends(objects).values()) == {(GATEWAY_SERVICE, 8000)}
    assert len(backends(objects)) == 2
    assert by_kind(objects, "Service", GATEWAY_SERVICE)["spec"]["externalName"] == gateway.host
