"""Who is lent a browser, and where an environment reaches its own public URL inside (domain/browser.py)."""

from __future__ import annotations

from envhub.domain import browser
from envhub.domain.browser import OwnUrl, own_url_inside
from envhub.domain.devcontainer import parse


def test_the_operator_decides_and_a_project_asks_through_its_devcontainer() -> None:
    assert browser.wanted("all", ())
    assert not browser.wanted("off", ("envhub/playwright",))
    assert not browser.wanted("feature", ())
    assert not browser.wanted("feature", ("ghcr.io/devcontainers/features/git:1",))
    assert browser.wanted("feature", ("envhub/playwright",))
    assert browser.wanted("feature", ("envhub/playwright:1",))


def test_the_feature_is_a_documented_one_and_others_are_listed_as_not_honoured() -> None:
    config = parse(
        '{"image": "x", "features": {"envhub/playwright:1": {},'
        ' "ghcr.io/devcontainers/features/node:1": {}}}',
        path=".devcontainer/devcontainer.json",
    )
    assert config.features == ("envhub/playwright:1",)
    assert [entry.key for entry in config.unsupported] == ["features.ghcr.io/devcontainers/features/node:1"]
    options = parse('{"image": "x", "features": {"envhub/playwright": {"version": "2"}}}', path="d.json")
    assert options.features == ()
    assert options.unsupported[0].reason == "options other than the defaults are not supported"


def test_the_own_url_is_served_inside_on_its_port_for_plain_http_only() -> None:
    assert own_url_inside("http://dev.shop.acme.localhost:3000/") == OwnUrl("dev.shop.acme.localhost", 3000)
    plain = own_url_inside("http://dev.shop.acme.envs.example.com/")
    assert plain == OwnUrl("dev.shop.acme.envs.example.com", 80)
    # A TLS URL needs the gateway's certificate; no URL, no host: nothing is served.
    assert own_url_inside("https://dev.shop.acme.localhost/") is None
    assert own_url_inside("") is None
    # A port already taken inside (a relayed service, a forwarded port) stays its owner's.
    assert own_url_inside("http://dev.shop.acme.localhost:5432/", taken=[5432]) is None
