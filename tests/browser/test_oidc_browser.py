"""Signing in through a real OpenID provider in a real browser.

envhub runs as ``make run`` does, but configured for OpenID Connect against the
test provider (npm oidc-provider, tests/identity/op/provider.mjs). Its
dashboard is built into a folder of its own (REFLEX_WEB_WORKDIR): the build
bakes in the port, and the single-user server of this session uses the
worktree's.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.browser.conftest import Envhub, launch
from tests.identity.conftest import ACCOUNTS, CLIENT_ID, CLIENT_SECRET
from tests.identity.oidc_provider import ProviderUnavailable, TestProvider
from tests.support.net import free_port

pytestmark = [pytest.mark.browser, pytest.mark.timeout(1200)]


@pytest.fixture(scope="module")
def provider_and_envhub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestProvider, Envhub]]:
    port = free_port()
    base = f"http://localhost:{port}"
    client = {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uris": [f"{base}/auth/callback"],
        "post_logout_redirect_uris": [f"{base}/sign-in?signed_out=1"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
    }
    try:
        provider = TestProvider(clients=[client], accounts=ACCOUNTS).__enter__()
    except ProviderUnavailable as exc:
        pytest.fail(f"the test OpenID provider (npm oidc-provider) did not start: {exc}", pytrace=False)
    folder = tmp_path_factory.mktemp("envhub-oidc")
    try:
        with launch(
            folder / "data",
            port,
            ENVHUB_OIDC_ISSUER=provider.issuer,
            ENVHUB_OIDC_CLIENT_ID=CLIENT_ID,
            ENVHUB_OIDC_CLIENT_SECRET=CLIENT_SECRET,
            ENVHUB_OIDC_SCOPES="openid email profile groups",
            ENVHUB_OIDC_ALLOWED_DOMAINS="acme.example",
            REFLEX_WEB_WORKDIR=str(folder / "web"),
        ) as server:
            yield provider, server
    finally:
        provider.__exit__(None, None, None)


@pytest.fixture
def context(browser: Browser, provider_and_envhub: tuple[TestProvider, Envhub]) -> Iterator[BrowserContext]:
    _provider, envhub = provider_and_envhub
    context = browser.new_context(base_url=envhub.base_url, viewport={"width": 1440, "height": 900})
    context.set_default_timeout(30_000)
    yield context
    context.close()


def sign_in_at_provider(page: Page, email: str) -> None:
    page.goto("/teams")
    page.wait_for_url(re.compile(r".*/sign-in/?\?next=/teams"))
    expect(page.locator("#oidc-sign-in")).to_be_visible()
    if target := os.environ.get("ENVHUB_SCREENSHOTS"):  # make screenshots: the OpenID Connect variant
        page.screenshot(path=Path(target) / "sign-in-oidc.png")
    page.locator("#oidc-sign-in").click()
    page.locator("#op-email").fill(email)  # the provider's own login page
    page.locator("#op-submit").click()


def test_signing_in_and_out_through_the_provider(
    context: BrowserContext, provider_and_envhub: tuple[TestProvider, Envhub]
) -> None:
    provider, _envhub = provider_and_envhub
    page = context.new_page()
    sign_in_at_provider(page, "alice@acme.example")
    page.wait_for_url(re.compile(r".*/teams/?$"))
    expect(page.locator("#signed-in-user")).to_have_text("alice")
    expect(page.get_by_text("Signed in with OpenID")).to_be_visible()
    # The first person to sign in owns the first team.
    expect(page.locator(".team-card")).to_contain_text("owner")
    session = next(c for c in context.cookies() if c["name"] == "envhub_session")
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Lax"
    page.locator("#sign-out").click()
    page.wait_for_url(re.compile(f"^{re.escape(provider.issuer)}/session/end"))
    page.locator("#op-logout").click()  # the provider asks; the test says yes
    page.wait_for_url(re.compile(r".*/sign-in/?\?signed_out=1"))
    expect(page.locator("#signed-out")).to_be_visible()
    page.goto("/")
    page.wait_for_url(re.compile(r".*/sign-in/?\?next=/"))


def test_someone_from_another_domain_is_turned_away(context: BrowserContext) -> None:
    page = context.new_page()
    sign_in_at_provider(page, "mallory@evil.example")
    expect(page.locator("#error-code")).to_have_text("sign_in_not_allowed")
    expect(page.locator("body")).to_contain_text("may not sign in to envhub")
    assert not [c for c in context.cookies() if c["name"] == "envhub_session"]
