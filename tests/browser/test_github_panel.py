"""The project page's GitHub panel in a real browser: connect with a token against the GitHub stub,
the webhook secret shown once, the policy saved, disconnect; every control found by its label.

"Once" is checked on the wire, not only on the page: after the reveal, no
WebSocket frame the server sends (a reload's hydration included) carries the
secret, so a secret sent again and cleared a moment later fails the test."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import SocketFrames
from tests.browser.test_dashboard import create_project
from tests.browser.test_environments_page import unlabelled
from tests.support.github_stub import GithubStub, github_stub


@pytest.fixture
def stub() -> Iterator[GithubStub]:
    with github_stub() as served:
        served.add_repo("acme/shop")
        yield served


def test_connect_a_repository_and_see_the_secret_once(
    page: Page, frames: SocketFrames, stub: GithubStub
) -> None:
    token = stub.add_token("acme/shop")
    project = f"gh-{secrets.token_hex(2)}"
    project_id = create_project(page, project, command="python3 -m http.server $PORT")
    page.goto(f"/projects/{project_id}")
    panel = page.locator("#github")
    expect(panel.get_by_label("Repository", exact=True)).to_be_editable()
    assert unlabelled(panel) == []
    panel.get_by_label("Repository", exact=True).fill("acme/shop")
    panel.get_by_label("GitHub API URL", exact=True).fill(stub.api_url)
    panel.get_by_label("Authentication", exact=True).click()
    page.get_by_role("option", name="token").click()
    panel.get_by_label("Token", exact=True).fill(token)
    panel.locator("#github-connect").click()
    secret = panel.locator("#github-webhook-secret")
    expect(secret).to_have_text(re.compile(r"^\S{40,}$"))
    shown = secret.inner_text()
    frames.wait_for_text(shown)  # the one reveal: sent over the socket, where the record sees it
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    panel.get_by_role("button", name="Copy webhook secret").click()
    expect(page.get_by_text("Secret copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == shown
    expect(panel.get_by_text("/webhooks/github").first).to_be_visible()
    assert token not in page.content()
    # The connect read the repository once; the worker's resync of a new connection
    # reads /repos/acme/shop/pulls whenever it comes round, so the path is matched whole.
    assert [call.path for call in stub.calls if call.method == "GET"].count("/repos/acme/shop") == 1

    # Once: a reload shows the connection, never the secret or the token, and the
    # server does not send the secret again, not even for a moment.
    after_reveal = frames.mark()
    page.reload()
    expect(panel.locator("#github-repository")).to_have_text("acme/shop")
    frames.wait_for_text('"acme/shop"', since=after_reveal)  # the reload's hydration has arrived
    assert frames.containing(shown, since=after_reveal) == []
    assert shown not in page.content()
    assert token not in page.content()
    expect(secret).to_have_count(0)
    assert unlabelled(panel) == []

    # A rotated secret is shown once too: leaving the page within the app puts it
    # away, and so does "I have copied it".
    rotated = []
    for put_away in ("leave", "copied"):
        panel.locator("#github-rotate").click()
        expect(secret).to_have_text(re.compile(r"^\S{40,}$"))
        rotated.append(secret.inner_text())
        if put_away == "leave":
            page.get_by_role("link", name="Projects", exact=True).first.click()  # the sidebar
            page.locator(".project-link", has_text=project).click()
            expect(panel.locator("#github-repository")).to_have_text("acme/shop")
        else:
            panel.get_by_role("button", name="I have copied it").click()
        expect(secret).to_have_count(0)
    assert len({shown, *rotated}) == 3
    after_rotation = frames.mark()

    panel.get_by_label("Draft pull requests too", exact=True).click()
    panel.get_by_label("Push branches", exact=True).fill("main, release/*")
    check_runs = panel.get_by_label("Check run on each commit (App connections)", exact=True)
    expect(check_runs).to_be_checked()  # on by default
    check_runs.click()
    panel.locator("#github-save-policy").click()
    expect(page.get_by_text("Pull-request policy saved")).to_be_visible()
    page.reload()
    expect(panel.get_by_label("Push branches", exact=True)).to_have_value("main, release/*")
    expect(check_runs).not_to_be_checked()

    panel.locator("#github-disconnect").click()
    expect(panel.get_by_label("Repository", exact=True)).to_be_editable()
    assert frames.containing(shown, since=after_reveal) == []
    assert [frames.containing(each, since=after_rotation) for each in rotated] == [[], []]
