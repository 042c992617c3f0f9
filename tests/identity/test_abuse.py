"""Abuse limits: per-client rate limits, body size limits, and a 4xx with a code for every bad input."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from envhub.config import Settings, override_settings
from envhub.launcher import login_link
from tests.conftest import build_settings


def limited(settings: Settings, **values: object) -> Settings:
    base = {name: getattr(settings, name) for name in ("data_dir", "database_url", "redis_url", "base_url")}
    return build_settings(**{**base, **values})


@pytest.fixture
def tight(local: Settings) -> Iterator[Settings]:
    configured = limited(
        local,
        rate_limit_sign_in="3/60",
        rate_limit_tokens="3/60",
        rate_limit_webhooks="3/60",
        rate_limit_git_credentials="3/60",
        trusted_proxy_hops=1,
    )
    with override_settings(configured):
        yield configured


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/auth/login"),
        ("GET", "/auth/local/ehl_guess"),
        ("POST", "/auth/device/code"),
        ("GET", "/api/v1/tokens"),
        ("POST", "/webhooks/github"),
        ("POST", "/api/v1/environment-identity/git-credentials"),
    ],
)
def test_sign_in_token_and_webhook_endpoints_are_rate_limited_per_client(
    tight: Settings, envhub_http: str, method: str, path: str
) -> None:
    def hit(client_ip: str) -> httpx.Response:
        return httpx.request(method, f"{envhub_http}{path}", headers={"X-Forwarded-For": client_ip})

    answers = [hit("203.0.113.7").status_code for _ in range(3)]
    assert 429 not in answers
    refused = hit("203.0.113.7")
    assert refused.status_code == 429
    assert refused.json()["code"] == "rate_limited"
    assert 1 <= int(refused.headers["retry-after"]) <= 61
    assert hit("198.51.100.9").status_code != 429  # another client has its own budget


def test_limits_hold_without_redis(local: Settings, envhub_http: str) -> None:
    """Taking Redis away must not lift the limits: each process keeps counting."""
    from tests.support.net import free_port

    gone = limited(local, redis_url=f"redis://127.0.0.1:{free_port()}/0", rate_limit_sign_in="2/60")
    with override_settings(gone):
        answers = [httpx.get(f"{envhub_http}/auth/login").status_code for _ in range(5)]
    # Fixed windows: five tries may straddle two of them, which allow two each.
    assert 429 in answers, answers


def test_oversized_bodies_are_refused(local: Settings, envhub_http: str) -> None:
    small = limited(local, max_body_bytes=4096)
    with override_settings(small), httpx.Client(timeout=10) as person:
        person.get(login_link(small))
        person.headers["X-CSRF-Token"] = person.get(f"{envhub_http}/api/v1/me").json()["csrf_token"]
        big = {"name": "x" * 10_000, "scopes": ["read"], "expires_in_days": 1}
        declared = person.post(f"{envhub_http}/api/v1/tokens", json=big)
        assert (declared.status_code, declared.json()["code"]) == (413, "payload_too_large")

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            yield b'{"name": "'
            for _ in range(20):
                yield b"x" * 1000
            yield b'", "scopes": ["read"], "expires_in_days": 1}'

        streamed = person.post(
            f"{envhub_http}/api/v1/tokens", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert (streamed.status_code, streamed.json()["code"]) == (413, "payload_too_large")
        fine = person.post(
            f"{envhub_http}/api/v1/tokens", json={"name": "ok", "scopes": ["read"], "expires_in_days": 1}
        )
        assert fine.status_code == 201


BAD_INPUTS: list[tuple[str, str, dict[str, object]]] = [
    ("POST", "/api/v1/tokens", {"content": b"{not json", "headers": {"Content-Type": "application/json"}}),
    ("POST", "/api/v1/tokens", {"json": []}),
    ("POST", "/api/v1/tokens", {"json": {"name": 5, "scopes": "read", "expires_in_days": "soon"}}),
    ("POST", "/api/v1/tokens", {"json": {"name": "x", "scopes": ["read"], "expires_in_days": 10**30}}),
    (
        "POST",
        "/api/v1/tokens",
        {
            "content": b'{"name": "\xff\xfe", "scopes": ["read"]}',
            "headers": {"Content-Type": "application/json"},
        },
    ),
    ("POST", "/api/v1/tokens", {"content": "\x00" * 10, "headers": {"Content-Type": "text/plain"}}),
    ("DELETE", "/api/v1/tokens/abc", {}),
    ("DELETE", "/api/v1/tokens/99999999999999999999999", {}),
    ("DELETE", "/api/v1/tokens/424242", {}),
    ("GET", "/api/v1/audit/events?offset=-1", {}),
    ("GET", "/api/v1/audit/events?limit=100000", {}),
    ("GET", "/api/v1/audit/events?since=yesterday", {}),
    ("GET", "/api/v1/audit/events?team_id=abc", {}),
    ("GET", "/api/v1/audit/events?since=2030-01-01&until=2020-01-01", {}),
    ("GET", "/api/v1/audit/events?actor=" + "a" * 500, {}),
    ("GET", "/api/v1/audit/export?team_id=-5", {}),
    ("GET", "/api/v1/nothing-here", {}),
    ("PUT", "/api/v1/me", {}),
    ("GET", "/auth/callback", {}),
    ("GET", "/auth/callback?state=x&code=y", {}),
    ("GET", "/auth/local/%00%ff", {}),
    ("POST", "/auth/device/code", {"json": {"client_id": "envhub-cli"}}),
    ("POST", "/auth/device/code", {"data": {"client_id": "envhub-cli", "scope": "read " * 300}}),
    (
        "POST",
        "/auth/device/token",
        {"data": {"grant_type": "urn:ietf:params:oauth:grant-type:device_code", "device_code": "\x00"}},
    ),
    ("POST", "/auth/logout", {"data": {"csrf_token": "\x00" * 3}, "headers": {"X-CSRF-Token": "bogus"}}),
    ("GET", "/api/v1/audit/events?team_id=99999999999999999999", {}),
]


@pytest.mark.parametrize(
    ("method", "path", "kwargs"), BAD_INPUTS, ids=[f"{m} {p[:50]}" for m, p, _ in BAD_INPUTS]
)
def test_every_bad_input_gets_a_4xx_with_a_code(
    local: Settings, envhub_http: str, method: str, path: str, kwargs: dict[str, object]
) -> None:
    with httpx.Client(timeout=10) as person:
        person.get(login_link(local))
        person.headers["X-CSRF-Token"] = person.get(f"{envhub_http}/api/v1/me").json()["csrf_token"]
        person.headers["Accept"] = "application/json"
        response = person.request(method, f"{envhub_http}{path}", **kwargs)  # type: ignore[arg-type]
    assert 400 <= response.status_code < 500, response.text
    body = response.json()
    assert isinstance(body.get("code"), str), body
    assert body["code"], body
    assert "message" in body
