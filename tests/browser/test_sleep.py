"""Sleep from the dashboard, then visit the URL: Chromium sees the waking-up page turn into the app;
then what its hours running and asleep cost, on its page and on its team's costs page."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect
from sqlmodel import Session, create_engine

from envhub.models import Project
from tests.browser.conftest import PRICES, Envhub
from tests.browser.test_dashboard import PHASE_TIMEOUT, create_environment, create_project, unique

AWAKE = "awake again"
CURRENCY = PRICES["ENVHUB_PRICE_CURRENCY"]
MONEY = re.compile(rf"^(\d+\.\d\d) {CURRENCY}$")


def test_a_visit_to_a_sleeping_environment_shows_the_waking_page_then_the_app_and_what_it_cost(
    page: Page, envhub_server: Envhub
) -> None:
    command = f"echo '<h1>{AWAKE}</h1>' > index.html && python3 -m http.server $PORT"
    project_id = create_project(page, unique("dozy"), command=command)
    name, environment_id = create_environment(page)
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

    # Its hours running and asleep this month, and their estimated cost at the operator's prices
    # (the suite's envhub sets them, in EUR): above zero, since it ran for a while.
    summary = page.locator("#usage-cost-summary")
    figures = [rf"\d+\.\d {unit}" for unit in ("h running", "h asleep", "CPU-h", "GiB-h")]
    expect(summary).to_have_text(re.compile("^" + " · ".join([*figures, MONEY.pattern[1:]])))
    expect(page.locator("#cost-estimate")).to_have_text(MONEY)
    spent = _amount(page.locator("#cost-estimate").inner_text())
    assert spent > 0
    assert summary.inner_text().endswith(f"{spent:.2f} {CURRENCY}")

    # The team's page: its total, and this environment's row with its hours and cost.
    page.goto(f"/teams/{_team_of(envhub_server, project_id)}")
    page.locator("#team-costs-link").click()
    page.wait_for_url(re.compile(r".*/teams/\d+/costs$"))
    row = page.locator("#team-costs-table tr", has_text=name)
    expect(row.locator("td").nth(3)).to_have_text(re.compile(r"^\d+\.\d$"))  # hours running
    expect(row.locator("td").last).to_have_text(MONEY)
    assert _amount(row.locator("td").last.inner_text()) >= spent  # it kept running since
    total = page.locator("#team-costs-total")
    expect(total).to_contain_text(" h running · ")
    assert _amount(total.inner_text().rsplit(" · ", 1)[1]) >= _amount(row.locator("td").last.inner_text())


def _amount(text: str) -> float:
    found = MONEY.match(text.strip())
    assert found, text
    return float(found.group(1))


def _team_of(envhub: Envhub, project_id: int) -> int:
    engine = create_engine(f"sqlite:///{envhub.data_dir / 'envhub.db'}")
    with Session(engine) as session:
        project = session.get(Project, project_id)
        assert project is not None
        team_id = project.team_id
    engine.dispose()
    return team_id
