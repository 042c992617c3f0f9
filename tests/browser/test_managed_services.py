"""Managed services in Chromium: declared on the project page, given to an environment, shown and rotated.

The owner adds a Redis to a project on its page, creates an environment, and
finds a Services panel there: the cache ready on envhub's own redis-server,
the variable its workloads receive (never its value), and a button that
rotates the credential and redeploys. The app itself proves the variable
works: it answers with what its Redis said.
"""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.browser.conftest import Envhub
from tests.browser.test_dashboard import PHASE_TIMEOUT, create_environment, create_project, unique

# The app asks its Redis for PING through REDIS_URL (a raw RESP client) and serves the answer.
_APP = (
    "python3 -c 'import os, socket, time, urllib.parse as u; "
    'r = u.urlsplit(os.environ["REDIS_URL"]); '
    "s = socket.create_connection((r.hostname, r.port)); "
    's.sendall(b"AUTH %s %s\\r\\nPING\\r\\n" % (r.username.encode(), u.unquote(r.password).encode())); '
    "time.sleep(0.5); said = s.recv(100).decode().split()[-1]; "
    'open("index.html", "w").write("<h1>redis says " + said + "</h1>")\''
    " && exec python3 -m http.server $PORT"
)


def test_a_project_s_redis_reaches_its_environment_and_is_shown_without_its_secret(
    page: Page, envhub_server: Envhub
) -> None:
    project_id = create_project(page, unique("cached"), command=_APP)
    setting = page.locator("#managed-services-setting")
    expect(setting).to_contain_text("No managed services.")
    setting.get_by_label("Service name").fill("cache")
    setting.get_by_label("Service kind").click()
    page.get_by_role("option", name="Redis").click()
    setting.get_by_role("button", name="Add service").click()
    expect(page.get_by_text("Added cache")).to_be_visible()
    expect(setting.locator(".declared-service")).to_contain_text("REDIS_URL")

    _, environment_id = create_environment(page)
    page.goto(f"/projects/{project_id}/environments/{environment_id}")
    expect(page.locator("#phase")).to_contain_text("ready", timeout=PHASE_TIMEOUT)
    panel = page.locator("#managed-services")
    row = panel.locator(".managed-service[data-service='cache']")
    expect(row).to_have_attribute("data-state", "ready")
    expect(row).to_contain_text("Redis (persistent)")
    expect(row).to_contain_text("REDIS_URL")
    expect(row).to_contain_text("on embedded")
    assert "redis://" not in panel.inner_text()

    public_url = page.locator("#public-url").get_attribute("href") or ""
    app = page.context.new_page()
    app.goto(public_url)
    expect(app.locator("h1")).to_have_text("redis says +PONG")
    app.close()

    row.get_by_role("button", name="Rotate the credential of cache").click()
    expect(page.get_by_text("Rotating cache's credential")).to_be_visible()
    expect(page.locator("#phase")).to_contain_text("ready", timeout=PHASE_TIMEOUT)
    expect(row).to_have_attribute("data-state", "ready")
