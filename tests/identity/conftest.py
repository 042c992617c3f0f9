"""Fixtures for sign-in, sessions, teams, sharing, tokens and the audit chain.

* ``op``: a real OpenID provider (npm oidc-provider) for the whole session,
  whose client knows envhub's callback on ``envhub_port``.
* ``oidc``: envhub's settings for this test with sign-in through ``op``.
* ``envhub_http``: envhub's real ASGI app (create_api, with every middleware)
  served over HTTP on ``envhub_port`` for the module; a test's settings
  override applies to it as to everything in this process.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from envhub.api.app import create_api
from envhub.config import Settings, override_settings
from envhub.integrations.oidc import forget_provider_cache
from tests.conftest import build_settings
from tests.identity.oidc_provider import ProviderUnavailable, TestProvider
from tests.support.components import require
from tests.support.net import free_port
from tests.support.servers import serve_asgi

logging.getLogger("granian").setLevel(logging.ERROR)

CLIENT_ID = "envhub"
CLIENT_SECRET = "envhub-test-client-secret"
ACCOUNTS: dict[str, dict[str, Any]] = {
    "alice@acme.example": {"name": "Alice Archer", "groups": ["engineering"]},
    "bob@acme.example": {"name": "Bob Baker"},
    "carol@partner.example": {"name": "Carol Contractor", "groups": ["envhub-users"]},
    "mallory@evil.example": {"name": "Mallory"},
    "unverified@acme.example": {"name": "Una Verified", "email_verified": False},
    "invited@acme.example": {"name": "Ivy Invited"},
}


@pytest.fixture(scope="session")
def envhub_port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def op(envhub_port: int) -> Iterator[TestProvider]:
    base = f"http://localhost:{envhub_port}"
    client = {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uris": [f"{base}/auth/callback"],
        "post_logout_redirect_uris": [f"{base}/sign-in?signed_out=1"],
        "grant_types": [
            "authorization_code",
            "refresh_token",
            "urn:ietf:params:oauth:grant-type:device_code",
        ],
        "response_types": ["code"],
        "token_endpoint_auth_method": "client_secret_basic",
    }
    require("node")
    try:
        provider = TestProvider(clients=[client], accounts=ACCOUNTS).__enter__()
    except ProviderUnavailable as exc:
        pytest.fail(f"the test OpenID provider (npm oidc-provider) did not start: {exc}", pytrace=False)
    try:
        yield provider
    finally:
        provider.__exit__(None, None, None)


def oidc_settings(base: Settings, op: TestProvider, port: int, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        name: getattr(base, name) for name in ("data_dir", "database_url", "redis_url", "queue_name")
    }
    values.update(
        base_url=f"http://localhost:{port}",
        oidc_issuer=op.issuer,
        oidc_client_id=CLIENT_ID,
        oidc_client_secret=CLIENT_SECRET,
        oidc_scopes="openid email profile groups",
        oidc_allowed_domains="acme.example",
        oidc_allowed_groups="envhub-users",
        oidc_clock_leeway=5,
    )
    values.update(extra)
    return build_settings(**values)


@pytest.fixture
def oidc(settings: Settings, op: TestProvider, envhub_port: int) -> Iterator[Settings]:
    """This test's settings with sign-in through the test provider."""
    forget_provider_cache()
    op.control(tamper=None, accounts=ACCOUNTS)
    configured = oidc_settings(settings, op, envhub_port)
    with override_settings(configured):
        yield configured


@pytest.fixture
def local(settings: Settings, envhub_port: int) -> Iterator[Settings]:
    """This test's settings in single-user local mode, served on ``envhub_port``."""
    values = {
        name: getattr(settings, name) for name in ("data_dir", "database_url", "redis_url", "queue_name")
    }
    configured = build_settings(**values, base_url=f"http://localhost:{envhub_port}")
    with override_settings(configured):
        yield configured


@pytest.fixture(scope="module")
def envhub_app() -> Any:
    return create_api()


@pytest.fixture(scope="module")
def envhub_http(envhub_app: Any, envhub_port: int) -> Iterator[str]:
    with serve_asgi(envhub_app, envhub_port):
        yield f"http://localhost:{envhub_port}"
