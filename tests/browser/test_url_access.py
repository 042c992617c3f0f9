"""A project whose environment URLs need sign-in, as its people and a stranger meet it in Chromium.

The owner switches the project to sign-in on its page and creates an
environment; a stranger's browser opening the URL lands on envhub's sign-in
page and never sees the app; the owner's browser goes through envhub and back
to the app without doing anything, and the address bar ends on the app's own
URL and path (no ticket left in it).
"""

from __future__ import annotations

import re

from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import Envhub
from tests.browser.test_dashboard import PHASE_TIMEOUT, create_environment, create_project, unique

HELLO = "Members only"


def test_a_sign_in_project_s_url_lets_its_people_in_and_sends_others_to_sign_in(
    page: Page, browser: Browser, envhub_server: Envhub
) -> None:
    project = unique("private")
    command = (
        f"mkdir -p docs && echo '<h1>{HELLO}</h1>' > docs/index.html && exec python3 -m http.server $PORT"
    )
    project_id = create_project(page, project, command=command)
    setting = page.locator("#url-access-setting")
    setting.locator("#project-url-access").click()
    page.get_by_role("option", name="People signed in to envhub who can see the environment").click()
    expect(page.get_by_text("Saved", exact=True)).to_be_visible()  # the toast, not a form mentioning it
    expect(setting.locator("#project-url-access")).to_contain_text("People signed in")

    name, environment_id = create_environment(page)
    page.goto(f"/projects/{project_id}/environments/{environment_id}")
    expect(page.locator("#phase")).to_contain_text("ready", timeout=PHASE_TIMEOUT)
    public_url = page.locator("#public-url").get_attribute("href") or ""
    assert public_url.startswith(f"http://{name}.{project}.")
    deep = f"{public_url}docs/?from=review"

    stranger = browser.new_context()
    try:
        other = stranger.new_page()
        other.goto(deep)
        other.wait_for_url(re.compile(r".*/sign-in/?\?next=.*"))
        expect(other.locator("body")).not_to_contain_text(HELLO)
        expect(other.locator("#local-sign-in")).to_be_visible()
        expect(other.locator("#for-environment")).to_contain_text("only for people signed in to envhub")
    finally:
        stranger.close()

    app = page.context.new_page()
    app.goto(deep)
    expect(app.locator("h1")).to_have_text(HELLO)
    assert app.url == deep  # back on the app's own address, ticket gone
    app.reload()  # the pass cookie holds: no round trip through envhub this time
    expect(app.locator("h1")).to_have_text(HELLO)
    app.close()
