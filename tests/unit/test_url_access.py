"""Passes that carry envhub sign-in to an environment's host, and where they may send the browser."""

from __future__ import annotations

import pytest

from envhub.domain.public import gateway_address, is_wildcard_host, wildcard_host
from envhub.domain.url_access import PassKind, UrlAccess, UrlPass, opened, parse_url_access, safe_next, seal
from envhub.errors import ValidationFailed

KEY = b"k" * 32
NOW = 1_800_000_000


def issued(kind: PassKind = PassKind.cookie, environment_id: int = 7, expires: int = NOW + 60) -> UrlPass:
    return UrlPass(kind=kind, environment_id=environment_id, session_hash="a" * 64, expires=expires)


def test_a_sealed_pass_opens_with_its_key_for_its_kind_and_environment() -> None:
    value = seal(KEY, issued())
    assert opened(KEY, value, kind=PassKind.cookie, environment_id=7, now=NOW) == issued()
    assert opened(b"x" * 32, value, kind=PassKind.cookie, environment_id=7, now=NOW) is None
    assert opened(KEY, value, kind=PassKind.ticket, environment_id=7, now=NOW) is None
    assert opened(KEY, value, kind=PassKind.cookie, environment_id=8, now=NOW) is None
    assert opened(KEY, value, kind=PassKind.cookie, environment_id=7, now=NOW + 60) is None


@pytest.mark.parametrize(
    "value", ["", "no-dot", "a.b.c", "!!.??", "e30.e30", "x" * 2000, seal(KEY, issued()).swapcase()]
)
def test_anything_else_is_no_pass(value: str) -> None:
    assert opened(KEY, value, kind=PassKind.cookie, environment_id=7, now=NOW) is None


def test_a_changed_payload_breaks_the_signature() -> None:
    _, signature = seal(KEY, issued()).split(".")
    other_body, _unused = seal(KEY, issued(environment_id=8)).split(".")
    assert opened(KEY, f"{other_body}.{signature}", kind=PassKind.cookie, environment_id=8, now=NOW) is None


@pytest.mark.parametrize(
    ("asked", "went"),
    [
        ("/a/b?c=1#d", "/a/b?c=1#d"),
        ("", "/"),
        (None, "/"),
        ("https://evil.example/", "/"),
        ("//evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("/a\\b", "/"),
        ("/a\nLocation: x", "/"),
        ("/" + "a" * 2001, "/"),
    ],
)
def test_next_stays_on_the_environment_s_host(asked: str | None, went: str) -> None:
    assert safe_next(asked) == went


def test_url_access_values() -> None:
    assert parse_url_access("sign_in") is UrlAccess.sign_in
    with pytest.raises(ValidationFailed) as refused:
        parse_url_access("private")
    assert refused.value.details == {"field": "url_access"}
    assert "public, sign_in" in refused.value.message


def test_only_hosts_of_the_wildcard_shape_are_taken_for_environments() -> None:
    host = wildcard_host(environment="pr-1", project="shop", team="acme", domain="preview.example.com")
    assert is_wildcard_host(host, "preview.example.com")
    assert not is_wildcard_host("envhub.preview.example.com", "preview.example.com")
    assert not is_wildcard_host(host, "")
    assert not is_wildcard_host(f"a.{host}", "preview.example.com")


def test_the_gateway_address_defaults_its_port_by_scheme() -> None:
    assert gateway_address("http://envhub-web.envhub.svc").port == 80
    assert gateway_address("https://envhub-web.envhub.svc").url == "https://envhub-web.envhub.svc:443"
    assert gateway_address("http://envhub-web.envhub.svc:8000").url == "http://envhub-web.envhub.svc:8000"
