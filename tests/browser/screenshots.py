"""Regenerates docs/screenshots/ from a running envhub: ``make screenshots``.

Not part of the test run (its file name is not ``test_*.py``, so pytest does
not collect it, and nothing is skipped in ``make test``): this script runs
pytest on itself, so the screenshots are taken with the browser suite's own
fixtures (a real envhub started as ``make run`` starts it, real Chromium).

    python -m tests.browser.screenshots [FOLDER]   (default: docs/screenshots)
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from envhub.config import PROJECT_ROOT
from tests.browser.conftest import Envhub
from tests.browser.test_dashboard import (
    PHASE_TIMEOUT,
    SHOP_MANIFESTS,
    SHOP_SERVICES,
    create_environment,
    create_project,
)
from tests.browser.test_identity import _team_id, add_people
from tests.browser.test_terminal import environment_url, open_terminal, run

__all__ = ["environment_url"]  # a fixture the terminal screenshots use

FOLDER_VARIABLE = "ENVHUB_SCREENSHOTS"


def target_folder() -> Path:
    folder = Path(os.environ[FOLDER_VARIABLE])
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_dashboard_screenshots(page: Page) -> None:
    """Regenerates docs/screenshots/ (``make screenshots``)."""
    folder = target_folder()

    # A fresh envhub: the Environments page's empty state, before anything exists.
    page.goto("/environments")
    expect(page.locator("#go-to-projects")).to_be_visible()
    page.screenshot(path=folder / "environments-empty.png", full_page=True)

    serve = "python3 -m http.server $PORT"
    create_project(page, "docs-site", command=serve, description="Product documentation")
    create_environment(page)
    create_project(page, "api-gateway", command=serve, description="Public REST gateway")
    create_environment(page)
    slow = f"sleep 8; {serve}"
    project_id = create_project(
        page,
        "storefront",
        command=slow,
        description="The shop's web frontend",
        services=SHOP_SERVICES,
        manifests=SHOP_MANIFESTS,
    )

    page.goto(f"/projects/{project_id}")
    create_environment(page)
    _, environment_id = create_environment(page)
    page.goto(f"/projects/{project_id}/environments/{environment_id}")
    expect(page.locator(".step[data-key=health][data-status=running]")).to_be_visible(timeout=PHASE_TIMEOUT)
    page.screenshot(path=folder / "environment-provisioning.png", full_page=True)
    expect(page.locator("#phase")).to_contain_text("ready", timeout=PHASE_TIMEOUT)
    expect(page.locator(".log-line").first).to_be_visible()
    expect(page.locator(".ready-dot[data-ready=true]")).to_be_visible()  # workloads catch up
    page.screenshot(path=folder / "environment-ready.png", full_page=True)

    page.goto(f"/projects/{project_id}")
    expect(page.locator(".env-row[data-phase=ready]")).to_have_count(2, timeout=PHASE_TIMEOUT)
    page.screenshot(path=folder / "project.png", full_page=True)
    page.goto("/environments")
    expect(page.locator(".env-row[data-phase=ready]")).to_have_count(4, timeout=PHASE_TIMEOUT)
    page.screenshot(path=folder / "environments.png", full_page=True)
    page.goto("/")
    expect(page.locator("#projects-table .project-link", has_text="storefront")).to_be_visible()
    page.screenshot(path=folder / "projects.png", full_page=True)

    # The "New project" dialog with its container-workloads section open and an error in it.
    page.set_viewport_size({"width": 1440, "height": 1560})
    page.locator("#new-project").click()
    page.locator("#project-name").fill("checkout")
    page.locator("#toggle-workloads").click()
    checkout = "- name: checkout\n  image: ghcr.io/acme/checkout:2.0\n  ports: [http]"
    page.locator("#project-services").fill(checkout)
    page.locator("#create-project").click()
    expect(page.locator("#field-services .field-error")).to_be_visible()
    page.screenshot(path=folder / "project-new-workloads.png")
    page.keyboard.press("Escape")
    page.set_viewport_size({"width": 1440, "height": 900})

    # The theme follows the system colour scheme until someone toggles it.
    page.emulate_media(color_scheme="dark")
    page.goto(f"/projects/{project_id}/environments/{environment_id}")
    expect(page.locator("html.dark")).to_have_count(1)
    expect(page.locator("#phase")).to_contain_text("ready")
    page.screenshot(path=folder / "environment-ready-dark.png", full_page=True)


def test_catalog_service_screenshots(page: Page) -> None:
    """Regenerates docs/screenshots/project-catalog-service.png (``make screenshots``): a RabbitMQ from
    the operator's catalog declared on the project page, and the form offering another with its version."""
    folder = target_folder()
    create_project(page, "message-bus", command="exec python3 -m http.server $PORT")
    setting = page.locator("#managed-services-setting")
    setting.get_by_label("Service name").fill("mq")
    setting.get_by_label("Service kind").click()
    page.get_by_role("option", name="RabbitMQ (catalog)").click()
    setting.get_by_label("version").fill("3.12")
    setting.get_by_role("button", name="Add service").click()
    expect(setting.locator(".declared-service")).to_contain_text("AMQP_URL")
    setting.get_by_label("Service name").fill("events")
    setting.get_by_label("Service kind").click()
    page.get_by_role("option", name="RabbitMQ (catalog)").click()
    expect(setting.get_by_label("version")).to_have_value("3.13")
    page.wait_for_timeout(5000)  # the toasts go
    setting.screenshot(path=folder / "project-catalog-service.png")


def test_terminal_screenshots(
    browser: Browser, envhub_server: Envhub, environment_url: str, signed_in: dict[str, Any]
) -> None:
    """Regenerates docs/screenshots/terminal*.png (``make screenshots``)."""
    folder = target_folder()
    for scheme, name in (("light", "terminal.png"), ("dark", "terminal-dark.png")):
        context = browser.new_context(
            base_url=envhub_server.base_url,
            viewport={"width": 1280, "height": 900},
            color_scheme=scheme,
            storage_state=signed_in,  # type: ignore[arg-type]
        )
        page = context.new_page()
        open_terminal(page, environment_url)
        run(page, "clear; ls -l --color=always /usr/lib/python3/dist-packages | head -14", "total")
        run(page, "printf '\\033[1;32m✔ build passed\\033[0m in \\033[33m4.2s\\033[0m\\n'", "build passed")
        page.locator("#terminal-panel").scroll_into_view_if_needed()
        page.wait_for_timeout(400)
        page.locator("#terminal-panel").screenshot(path=folder / name)
        context.close()


def test_identity_screenshots(browser: Browser, envhub_server: Envhub) -> None:
    """Regenerates docs/screenshots/{sign-in,team,audit}.png (``make screenshots``), light and dark."""
    folder = target_folder()
    for scheme, suffix in (("light", ""), ("dark", "-dark")):
        context = browser.new_context(
            base_url=envhub_server.base_url, viewport={"width": 1440, "height": 900}, color_scheme=scheme
        )
        page = context.new_page()
        page.goto("/sign-in")
        expect(page.locator("#local-sign-in")).to_be_visible()
        page.screenshot(path=folder / f"sign-in{suffix}.png")
        page.goto(envhub_server.login_link())
        page.wait_for_url(f"{envhub_server.base_url}/")
        if scheme == "light":
            page.goto("/teams")
            page.locator("#new-team").click()
            page.locator("#team-name").fill("platform")
            page.locator("#create-team").click()
            page.wait_for_url(re.compile(r".*/teams/\d+$"))
            add_people(envhub_server, "platform", {"mara": "admin", "dev": "member", "quinn": "viewer"})
            for email in ("sam@acme.example", "lee@acme.example"):
                page.locator("#invite-email").fill(email)
                page.locator("#send-invite").click()
                expect(page.locator("#open-invites")).to_contain_text(email)
        team_url = envhub_server.base_url + "/teams/" + str(_team_id(envhub_server, "platform"))
        page.goto(team_url)
        expect(page.locator(".member-row")).to_have_count(4)
        page.screenshot(path=folder / f"team{suffix}.png", full_page=True)
        page.goto("/audit")
        page.locator("#verify-chain").click()
        expect(page.locator("#chain-summary")).to_contain_text("audit chain intact")
        page.screenshot(path=folder / f"audit{suffix}.png", full_page=True)
        context.close()


def main(argv: list[str]) -> int:
    folder = Path(argv[0] if argv else PROJECT_ROOT / "docs" / "screenshots").resolve()
    os.environ[FOLDER_VARIABLE] = str(folder)
    print(f"screenshots: writing {folder}")
    return int(
        pytest.main([__file__, "-p", "no:cacheprovider", "-p", "no:xdist", "--rootdir", str(PROJECT_ROOT)])
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
