"""Sleep from the dashboard, then visit the URL: Chromium sees the waking-up page turn into the app."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.browser.test_dashboard import PHASE_TIMEOUT, create_environment, create_project, unique

AWAKE = "awake again"


def test_a_visit_to_a_sleeping_environment_shows_the_waking_page_then_the_app(page: Page) -> None:
    command = f"echo '<h1>{AWAKE}</h1>' > index.html && python3 -m http.server $PORT"
    project_id = create_project(page, unique("dozy"), command=command)
    _name, environment_id = create_environment(page)
    page.goto(f"/projects/{project_id}/environments/{environment_id}")
    expect(page.locator("#phase")).to_contain_text("ready", timeout=PHASE_TIMEOUT)
    expect(page.locator("#idle-summary")).to_contain_text("Sleeps in")
    public_url = page.locator("#public-url").get_attribute("href") or ""

    page.locator("#pin-environment").click()
    expect(page.locator("#idle-summary")).to_contain_text("Pinned")
    expect(page.locator("#pin-environment")).to_have_attribute("aria-pressed", "true")
    page.locator("#pin-environment").click()
    expect(page.locator("#pin-environment")).to_have_attribute("aria-pressed", "false")
    page.locator("#sleep-environment").click()
    expect(page.locator("#phase")).to_contain_text("sleeping", timeout=PHASE_TIMEOUT)
    expect(page.locator("#wake-environment")).to_be_visible()

    app = page.context.new_page()
    app.goto(public_url)
    expect(app.get_by_role("status")).to_contain_text("is waking up")
    expect(app.get_by_role("progressbar", name="Waking up")).to_be_visible()
    # The page refreshes itself into the app, with no one touching it.
    expect(app.get_by_role("heading", name=AWAKE)).to_be_visible(timeout=PHASE_TIMEOUT)
    app.close()
    expect(page.locator("#phase")).to_contain_text("ready", timeout=PHASE_TIMEOUT)
