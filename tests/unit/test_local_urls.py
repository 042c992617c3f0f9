"""Local public URLs and the Host-header routing the gateway relies on."""

from __future__ import annotations

import pytest

from envhub.domain.specs import EnvironmentTarget, parse_spec
from envhub.urls.local import HostRoute, LocalUrls


@pytest.fixture
def urls() -> LocalUrls:
    return LocalUrls(base_url="http://localhost:3000", domain="localhost")


def test_url_for_and_publish(urls: LocalUrls) -> None:
    assert (
        urls.url_for(environment="dev", project="shop", team="acme") == "http://dev.shop.acme.localhost:3000/"
    )
    target = EnvironmentTarget(
        id=1, name="pr-9", project="shop", team="acme", generation=1, spec=parse_spec({})
    )
    assert urls.publish(target) == "http://pr-9.shop.acme.localhost:3000/"
    assert urls.unpublish(target) is None  # nothing to undo, and quiet


def test_a_forwarded_port_has_a_url_of_its_own(urls: LocalUrls) -> None:
    target = EnvironmentTarget(
        id=1, name="pr-9", project="shop", team="acme", generation=1, spec=parse_spec({})
    )
    url = urls.port_url(target, 5173)
    assert url == "http://5173.pr-9.shop.acme.localhost:3000/"
    assert urls.route(url.removeprefix("http://").rstrip("/")) == HostRoute("pr-9", "shop", "acme", port=5173)


def test_url_without_port_and_custom_domain() -> None:
    urls = LocalUrls(base_url="https://envhub.example.com", domain="preview.example.com")
    assert urls.url_for(environment="e", project="p", team="t") == "https://e.p.t.preview.example.com/"
    assert urls.route("e.p.t.preview.example.com") == HostRoute("e", "p", "t")
    assert urls.route("e.p.t.localhost") is None


@pytest.mark.parametrize(
    ("host", "route"),
    [
        ("dev.shop.acme.localhost:3000", HostRoute("dev", "shop", "acme")),
        ("dev.shop.acme.localhost", HostRoute("dev", "shop", "acme")),
        ("Dev.Shop.ACME.LocalHost:3000", HostRoute("dev", "shop", "acme")),
        ("dev.shop.acme.localhost.", HostRoute("dev", "shop", "acme")),
        ("localhost:3000", None),
        ("localhost", None),
        ("127.0.0.1:3000", None),
        ("[::1]:3000", None),
        ("shop.acme.localhost:3000", None),
        ("x.dev.shop.acme.localhost:3000", None),
        # A forwarded port of the environment: its number first.
        ("5173.dev.shop.acme.localhost:3000", HostRoute("dev", "shop", "acme", port=5173)),
        ("0.dev.shop.acme.localhost:3000", None),
        ("65536.dev.shop.acme.localhost:3000", None),
        ("005173.dev.shop.acme.localhost:3000", None),
        ("1.5173.dev.shop.acme.localhost:3000", None),
        ("dev..acme.localhost", None),
        (".shop.acme.localhost", None),
        ("dev.shop.acme.notlocalhost", None),
        ("dev.shop.acmelocalhost", None),
        ("", None),
    ],
)
def test_route(urls: LocalUrls, host: str, route: HostRoute | None) -> None:
    assert urls.route(host) == route
