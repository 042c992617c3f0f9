"""Looking inside an environment from its page: a container's details with secret values that never
reach the browser, a search of the logs done by the server, their download, and CPU and memory
plotted over time (the local runtime measures its process tree)."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import SocketFrames
from tests.browser.test_dashboard import PHASE_TIMEOUT, create_environment, create_project

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

SECRET_VALUE = "sk_live_" + secrets.token_hex(12)
COMMAND = "for i in 1 2 3; do echo line-$i; done; echo needle-found; python3 -m http.server $PORT"


def test_the_environment_page_shows_details_searches_downloads_and_plots(
    page: Page, frames: SocketFrames, tmp_path: Path
) -> None:
    project_id = create_project(page, f"inside-{secrets.token_hex(2)}", command=COMMAND)
    page.goto(f"/projects/{project_id}")
    page.locator("#secret-name").fill("STRIPE_KEY")
    page.locator("#secret-value").fill(SECRET_VALUE)
    page.locator("#save-secret").click()
    expect(page.locator(".secret-row .secret-name")).to_have_text(["STRIPE_KEY"])
    saved = frames.mark()  # the secrets form itself carried the value while it was typed
    _, environment_id = create_environment(page)
    page.goto(f"/projects/{project_id}/environments/{environment_id}")
    expect(page.locator("#phase")).to_contain_text("ready", timeout=PHASE_TIMEOUT)

    # The container's details: what it runs, its check, its variables; the secret by name only.
    details = page.locator(".container-details[data-container=main]")
    details.locator("summary").click()
    expect(details).to_contain_text("python3 -m http.server")
    expect(details.locator(".probes")).to_contain_text("readiness: HTTP GET")
    secret_row = details.locator(".env-row[data-name=STRIPE_KEY]")
    expect(secret_row).to_contain_text("project secret STRIPE_KEY")
    expect(secret_row.locator("[data-redacted=true]")).to_contain_text("redacted")
    expect(details.locator(".env-row[data-name=ENVHUB_ENVIRONMENT]")).to_be_visible()

    # The server searches; the browser gets the matching lines only.
    logs = page.locator("#logs")
    expect(logs).to_contain_text("line-2")
    page.get_by_label("Search the logs").fill("needle")
    page.locator("#log-search-go").click()
    expect(logs.locator(".log-line")).to_have_count(2)  # envhub's start line names the command too
    expect(logs).not_to_contain_text("line-2")
    download = page.locator("#logs-download")
    expect(download).to_have_attribute("href", re.compile(r"/logs/download\?search=needle$"))
    answer = page.request.get(download.get_attribute("href") or "")
    assert answer.ok, answer.text()
    assert re.fullmatch(r'attachment; filename=".+-\d{8}T\d{6}Z\.log"', answer.headers["content-disposition"])
    assert "needle-found" in answer.text().splitlines()
    assert "line-2" not in answer.text()

    # A time range, by the times the local runtime noted for each line: all of these are recent.
    page.get_by_label("Since").click()
    page.get_by_role("option", name="5m", exact=True).click()
    expect(download).to_have_attribute("href", re.compile(r"since=5m"))
    expect(page.locator("#logs-note")).to_have_count(0)
    expect(logs).to_contain_text("needle-found")
    answer = page.request.get(download.get_attribute("href") or "")
    assert "needle-found" in answer.text().splitlines()

    # CPU and memory: a row for the environment, where it was measured (its cgroup where envhub can
    # make one, else its process tree, and then why), and a plot that fills in while the page is open.
    usage = page.locator("#usage")
    expect(usage.locator(".usage-row")).to_have_count(1)
    expect(usage.locator("#usage-source")).to_contain_text(re.compile(r"^from (cgroup v[12]|process tree)"))
    expect(usage.locator(".usage-memory")).to_contain_text(re.compile(r"\d+\.\dMi"))
    expect(usage.locator(".usage-chart .recharts-line").first).to_be_visible(timeout=60_000)

    usage.scroll_into_view_if_needed()
    page.screenshot(path=tmp_path / "environment-inside.png", full_page=True)  # to look at after a run

    # The secret's value never reached the page, nor any frame the server sent it.
    assert SECRET_VALUE not in page.content()
    assert frames.containing(SECRET_VALUE, since=saved) == []
