"""The ingress URL provider: one DNS-safe, bounded, collision-free host per environment; its settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from envhub import wiring
from envhub.config import override_settings
from envhub.domain.naming import is_label
from envhub.domain.public import IngressRoute, wildcard_host
from envhub.services import ports
from envhub.urls.ingress import IngressUrls
from envhub.urls.local import LocalUrls
from tests.conftest import build_settings
from tests.support.runtime import make_target

DOMAIN = "preview.example.com"


def host(environment: str, project: str = "shop", team: str = "acme") -> str:
    return wildcard_host(environment=environment, project=project, team=team, domain=DOMAIN)


def test_the_host_is_one_readable_label_under_the_domain() -> None:
    name = host("pr-12")
    label, _, domain = name.partition(".")
    assert domain == DOMAIN
    assert label.startswith("pr-12-shop-")
    assert is_label(label)
    assert name == host("pr-12")  # the same every time


def test_hosts_stay_within_a_dns_label_and_apart() -> None:
    longest = host("e" * 63, "p" * 63, "t" * 63)
    label = longest.split(".")[0]
    assert len(label) == 63
    assert is_label(label)
    # Joins that read the same, and one project name in two teams, still differ.
    assert host("a-b", "c") != host("a", "b-c")
    assert host("dev", team="acme") != host("dev", team="globex")
    # Cut names keep their digests apart.
    assert host("e" * 63, "p" * 62 + "a") != host("e" * 63, "p" * 62 + "b")


def test_the_provider_gives_an_https_url_and_the_route_to_apply() -> None:
    urls = IngressUrls(domain=DOMAIN, class_name="nginx", tls_secret="wildcard-tls")
    target = make_target(7, name="pr-12")
    address = urls.address(target)
    assert address.url == f"https://{host('pr-12')}/"
    assert address.ingress == IngressRoute(host=host("pr-12"), class_name="nginx", tls_secret="wildcard-tls")
    assert urls.publish(target) == address.url
    assert urls.unpublish(target) is None


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"url_provider": "ingress", "runtime": "kubernetes"}, "ENVHUB_INGRESS_DOMAIN: required"),
        ({"url_provider": "ingress", "ingress_domain": DOMAIN}, "needs ENVHUB_RUNTIME=kubernetes"),
        ({"ingress_domain": "localhost"}, "not a DNS name"),
        ({"ingress_domain": "bad_name.example.com"}, "not a DNS name"),
        ({"ingress_domain": "x" * 64 + ".example.com"}, "not a DNS name"),
        ({"ingress_class": "Nginx Class"}, "ENVHUB_INGRESS_CLASS"),
        ({"ingress_tls_secret": "-tls"}, "ENVHUB_INGRESS_TLS_SECRET"),
        ({"ingress_cluster_issuer": "le", "ingress_tls_secret": "tls"}, "choose one way"),
    ],
)
def test_bad_ingress_settings_are_refused(values: dict[str, str], message: str, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=message):
        build_settings(data_dir=tmp_path, **values)


def test_a_wildcard_domain_is_taken_as_its_domain(tmp_path: Path) -> None:
    settings = build_settings(data_dir=tmp_path, ingress_domain="*.Preview.Example.com.")
    assert settings.ingress_domain == DOMAIN


def test_wiring_picks_the_provider_from_settings(tmp_path: Path) -> None:
    wiring.install()
    try:
        with override_settings(build_settings(data_dir=tmp_path)):
            ports.reset()
            assert isinstance(ports.url_provider(), LocalUrls)
        chosen = build_settings(
            data_dir=tmp_path,
            runtime="kubernetes",
            url_provider="ingress",
            ingress_domain=DOMAIN,
            ingress_class="traefik",
            ingress_cluster_issuer="letsencrypt",
        )
        with override_settings(chosen):
            ports.reset()
            provider = ports.url_provider()
            assert isinstance(provider, IngressUrls)
            assert (provider.domain, provider.class_name, provider.cluster_issuer) == (
                DOMAIN,
                "traefik",
                "letsencrypt",
            )
    finally:
        ports.reset()
