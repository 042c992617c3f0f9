"""A pull request's preview, followed as a reviewer would: a pull request opened on the GitHub
stub, GitHub's example ``opened`` delivered to envhub's webhook route, and the public URL taken
from envhub's comment on the pull request and opened in Chromium, which shows the app."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Envhub
from tests.browser.test_dashboard import create_project
from tests.github.conftest import REPOSITORY, Examples, GitHub
from tests.support.github_stub import GithubStub, github_stub
from tests.support.waiting import wait_for

GREETING = "Preview of pull request 2"


@pytest.fixture
def stub() -> Iterator[GithubStub]:
    with github_stub() as served:
        served.add_repo(REPOSITORY)
        yield served


def connect(page: Page, project_id: int, stub: GithubStub) -> str:
    """Connect the project to GitHub's example repository in its GitHub panel; returns the webhook secret."""
    page.goto(f"/projects/{project_id}")
    panel = page.locator("#github")
    panel.get_by_label("Repository", exact=True).fill(REPOSITORY)
    panel.get_by_label("GitHub API URL", exact=True).fill(stub.api_url)
    panel.get_by_label("Authentication", exact=True).click()
    page.get_by_role("option", name="token").click()
    panel.get_by_label("Token", exact=True).fill(stub.add_token(REPOSITORY))
    panel.locator("#github-connect").click()
    secret = panel.locator("#github-webhook-secret")
    expect(secret).to_have_text(re.compile(r"^\S{40,}$"))
    return secret.inner_text()


def test_follow_the_url_in_the_pull_request_comment_to_the_app(
    page: Page, envhub_server: Envhub, stub: GithubStub
) -> None:
    command = f"printf '<h1>{GREETING}</h1>' > index.html && exec python3 -m http.server $PORT"
    project_id = create_project(page, f"pr-{secrets.token_hex(2)}", command=command)
    secret = connect(page, project_id, stub)
    head = secrets.token_hex(20)
    stub.open_pull(REPOSITORY, number=2, head_sha=head)
    with httpx.Client(base_url=envhub_server.base_url, timeout=60) as client:
        answer = GitHub(client, secret).send("pull_request", Examples().pull_request("opened", sha=head))
    assert answer.status_code == 202, answer.text

    def comment() -> str:
        bodies = [c["body"] for c in stub.comments_on(REPOSITORY, 2)]
        assert len(bodies) <= 1, bodies
        return bodies[0] if bodies else ""

    wait_for(
        lambda: "Ready" in comment(),
        timeout=120,
        what="the comment to say ready",
        describe=lambda: f"{comment()}\n{envhub_server.log_tail()}",
    )
    found = re.search(r"\| Preview \| \[(http[^\]]+)\]\(\1\) \|", comment())
    assert found, comment()
    url = found.group(1)
    assert re.fullmatch(r"http://pr-2\.[^/]+\.localhost:\d+/", url), url

    page.goto(url)
    expect(page.get_by_role("heading", name=GREETING)).to_be_visible()
