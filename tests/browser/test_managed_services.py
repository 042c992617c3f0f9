"""Managed services in Chromium: declared on the project page, given to an environment, shown and rotated.

The owner adds a Redis to a project on its page, creates an environment, and
finds a Services panel there: the cache ready on envhub's own redis-server,
the variable its workloads receive (never its value), and a button that
rotates the credential and redeploys. The app itself proves the variable
works: it answers with what its Redis said.

The suite's envhub offers the example catalog (conftest.py): the owner picks
RabbitMQ from the same kind menu, sets its version in the field it brings, and
sees the service listed with its variable; a version the catalog refuses, or a
second RabbitMQ setting the same variable, is said next to the form.
"""

from __future__ import annotations

from playwright.sync_api import Locator, Page, expect

from tests.browser.conftest import Envhub
from tests.browser.test_dashboard import PHASE_TIMEOUT, create_environment, create_project, unique
from tests.browser.test_deployments_page import shots

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


def _choose_kind(page: Page, setting: Locator, option: str) -> None:
    setting.get_by_label("Service kind").click()
    page.get_by_role("option", name=option, exact=True).click()


def _shot(page: Page, setting: Locator, name: str) -> None:
    setting.scroll_into_view_if_needed()
    setting.screenshot(path=shots() / name)


def test_an_owner_declares_a_catalog_rabbitmq_with_its_version_and_a_bad_one_is_refused(
    page: Page, envhub_server: Envhub
) -> None:
    project_id = create_project(page, unique("queued"), command="exec python3 -m http.server $PORT")
    setting = page.locator("#managed-services-setting")
    setting.get_by_label("Service kind").click()
    options = page.get_by_role("option")
    expect(options).to_have_text(["PostgreSQL", "Redis", "S3 bucket", "RabbitMQ (catalog)"])
    page.screenshot(path=shots() / "catalog-service-menu.png")
    options.filter(has_text="RabbitMQ (catalog)").click()

    entry = setting.locator("#catalog-entry")
    expect(entry).to_contain_text("A RabbitMQ broker per environment")
    expect(entry.locator("code")).to_have_text(["AMQP_URL"])
    version = setting.get_by_label("version")
    expect(version).to_have_value("3.13")  # the catalog's default
    expect(version).to_have_accessible_description("RabbitMQ's minor version, such as 3.13.")
    setting.get_by_label("Service name").fill("mq")
    version.fill("4.0")
    setting.get_by_role("button", name="Add service").click()
    error = setting.get_by_role("alert")
    expect(error).to_contain_text("validation_failed")
    expect(error).to_contain_text("rabbitmq: '4.0' is not a valid version")
    expect(error).to_contain_text("RabbitMQ's minor version, such as 3.13.")  # the parameter's hint
    expect(setting).to_contain_text("No managed services.")
    expect(setting.get_by_label("Service name")).to_have_value("mq")  # what was typed is kept
    expect(version).to_have_value("4.0")
    _shot(page, setting, "catalog-service-refused.png")

    version.fill("3.12")
    setting.get_by_role("button", name="Add service").click()
    expect(page.get_by_text("Added mq")).to_be_visible()
    row = setting.locator(".declared-service[data-service='mq']")
    expect(row).to_contain_text("RabbitMQ (catalog)")
    expect(row.locator(".declared-parameter")).to_have_text(["version 3.12"])
    expect(row.locator("code.rt-Code")).to_have_text(["mq", "AMQP_URL"])
    expect(error).to_have_count(0)
    expect(setting.get_by_label("Service name")).to_have_value("")  # the form starts again
    expect(entry).to_have_count(0)
    expect(setting.get_by_label("Service kind")).to_have_text("PostgreSQL")

    # A second RabbitMQ would set AMQP_URL too: refused, saying how to tell them apart.
    setting.get_by_label("Service name").fill("events")
    _choose_kind(page, setting, "RabbitMQ (catalog)")
    expect(setting.get_by_label("version")).to_have_value("3.13")
    setting.get_by_role("button", name="Add service").click()
    expect(error).to_contain_text("service events would set AMQP_URL, which mq already sets")
    expect(error).to_contain_text("Give the service a prefix")
    _shot(page, setting, "catalog-service-clash.png")
    _choose_kind(page, setting, "Redis")  # another kind: the refusal goes, the parameters too
    expect(error).to_have_count(0)
    expect(setting.get_by_label("version")).to_have_count(0)

    # Declared for good: a fresh load shows it, with its parameter and its variable.
    page.goto(f"/projects/{project_id}")
    expect(row).to_contain_text("version 3.12")
    expect(row).to_contain_text("AMQP_URL")
    _shot(page, setting, "catalog-service-declared.png")
