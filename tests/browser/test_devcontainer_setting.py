"""The project page's dev container setting, as a person (or a screen reader) finds and uses it."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_dashboard import create_project, unique

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]


def test_the_named_configuration_is_saved_refused_and_cleared_by_its_label(page: Page) -> None:
    project_id = create_project(page, unique("devc"), command="python3 -m http.server $PORT")
    setting = page.get_by_label("Dev container configuration")
    expect(setting).to_have_value("")

    setting.fill("docs")
    page.get_by_role("button", name="Save dev container").click()
    expect(page.get_by_text("Dev container: docs")).to_be_visible()
    page.goto(f"/projects/{project_id}")
    expect(page.get_by_label("Dev container configuration")).to_have_value("docs")

    # A path that leaves .devcontainer/ is refused next to the field, and nothing changes.
    page.get_by_label("Dev container configuration").fill("../../etc")
    page.get_by_role("button", name="Save dev container").click()
    expect(page.locator("#devcontainer-setting")).to_contain_text("not a dev container configuration name")
    page.goto(f"/projects/{project_id}")
    expect(page.get_by_label("Dev container configuration")).to_have_value("docs")

    page.get_by_label("Dev container configuration").fill("")
    page.get_by_role("button", name="Save dev container").click()
    expect(page.get_by_text("Dev container: the default places")).to_be_visible()
