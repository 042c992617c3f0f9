"""The Environments page, and the dashboard's forms as assistive technology reads them.

One page lists every environment the person can see across projects; its
filters live in the URL. The browser suite's envhub pushes changes only (no
periodic reload, see conftest.py), so a phase changing on the open page proves
the page subscribes to the right channels. Other tests share the server, so
this one names its projects with a tag of its own and narrows to them.

Every form field must be found by its visible label (``get_by_label``), as a
screen reader announces it: each dialog and page is also swept for inputs,
selects, text areas, comboboxes and checkboxes that no label names.
"""

from __future__ import annotations

import re
import secrets
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.browser.test_dashboard import PHASE_TIMEOUT, create_environment, create_project

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]

SERVE = "python3 -m http.server $PORT"

# Controls a person fills or picks, and whether something names them for assistive technology.
UNLABELLED = """(root) => {
  const controls = root.querySelectorAll(
    'input:not([type=hidden]), select, textarea, [role=combobox], [role=checkbox], [role=switch]'
  );
  const named = (el) =>
    (el.labels && Array.from(el.labels).some((l) => l.textContent.trim())) ||
    (el.getAttribute('aria-label') || '').trim() ||
    (el.getAttribute('aria-labelledby') || '').split(/\\s+/).some(
      (id) => id && document.getElementById(id) && document.getElementById(id).textContent.trim()
    );
  const shown = Array.from(controls).filter(
    (el) => el.getClientRects().length > 0 && el.getAttribute('aria-hidden') !== 'true'
  );
  return {
    count: shown.length,
    unnamed: shown.filter((el) => !named(el)).map((el) => el.outerHTML.slice(0, 160)),
  };
}"""


def unlabelled(scope: Locator) -> list[str]:
    """The controls in ``scope`` that nothing names (there must be some controls to look at)."""
    found = scope.evaluate(UNLABELLED)
    assert found["count"] > 0, "no form controls where some were expected"
    unnamed: list[str] = found["unnamed"]
    return unnamed


def query(page: Page) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


def rows(page: Page) -> Locator:
    return page.locator("#all-environments-table .env-row")


def pick(page: Page, label: str, option: str | re.Pattern[str]) -> None:
    """Choose ``option`` in the filter labelled ``label``, found as a screen reader would."""
    page.get_by_label(label, exact=True).click()
    page.get_by_role("option", name=option).click()


def test_the_page_lists_environments_of_every_project_and_filters_them_in_the_url(page: Page) -> None:
    tag = secrets.token_hex(3)
    alpha = create_project(page, f"alpha-{tag}", command=SERVE)
    alpha_env, _ = create_environment(page)
    beta = create_project(page, f"beta-{tag}", command=SERVE)
    beta_envs = [create_environment(page)[0], create_environment(page)[0]]

    # From the sidebar: everything, newest first, from both projects.
    page.goto("/")
    page.get_by_role("link", name="Environments").click()
    page.wait_for_url(re.compile(r".*/environments$"))
    expect(page.locator("#page-title")).to_have_text("Environments")
    # Names are unique within a project only: other tests' projects may hold the same generated name.
    for name, project in ((alpha_env, f"alpha-{tag}"), *((env, f"beta-{tag}") for env in beta_envs)):
        row = rows(page).filter(has=page.locator(f"a.env-link:text-is('{name}')"))
        expect(row.filter(has=page.locator(f"a.env-project:text-is('{project}')"))).to_have_count(1)

    # Search narrows to the names with the tag (project names here), and says so in the URL.
    page.get_by_label("Search", exact=True).fill(tag)
    page.wait_for_url(re.compile(rf".*/environments\?q={tag}$"))
    expect(rows(page)).to_have_count(3)
    expect(rows(page).locator(".env-project")).to_have_text([f"beta-{tag}", f"beta-{tag}", f"alpha-{tag}"])
    expect(page.locator("#environments-total")).to_have_text("3")

    # A project filter on top of the search.
    pick(page, "Project", re.compile(rf"alpha-{tag}$"))
    page.wait_for_url(re.compile(r".*project=\d+"))
    assert query(page) == {"q": [tag], "project": [str(alpha)]}
    expect(rows(page)).to_have_count(1)
    expect(rows(page).locator(".env-link")).to_have_text([alpha_env])

    # The filtered view is a link: opened afresh, it shows the same and the controls say why.
    page.goto(f"/environments?q={tag}&project={beta}&trigger=manual")
    expect(rows(page)).to_have_count(2)
    expect(rows(page).locator(".env-link")).to_have_text(list(reversed(beta_envs)))
    expect(page.get_by_label("Search", exact=True)).to_have_value(tag)
    expect(page.get_by_label("Project", exact=True)).to_contain_text(f"beta-{tag}")
    expect(page.get_by_label("Trigger", exact=True)).to_contain_text("by hand")

    # Kind, trigger and creator each narrow; none of these were made by an agent or are deployments.
    pick(page, "Kind", "deployment")
    page.wait_for_url(re.compile(r".*kind=deployment"))
    expect(page.get_by_text("No environments match")).to_be_visible()
    expect(rows(page)).to_have_count(0)
    pick(page, "Kind", "Any kind")
    page.wait_for_url(re.compile(r"^(?!.*kind=).*$"))
    expect(rows(page)).to_have_count(2)
    pick(page, "Trigger", "agent")
    expect(page.get_by_text("No environments match")).to_be_visible()
    pick(page, "Trigger", "Any trigger")
    expect(rows(page)).to_have_count(2)
    me = page.locator("#signed-in-user").inner_text()
    pick(page, "Created by", me)
    page.wait_for_url(re.compile(rf".*creator={re.escape(me)}"))
    expect(rows(page)).to_have_count(2)
    expect(rows(page).first).to_contain_text(me)

    # A phase chip filters by its phase; the chips count what the other filters leave.
    every = page.locator(".phase-chip[data-phase=all]")
    expect(every).to_contain_text("2")
    expect(every).to_have_attribute("aria-pressed", "true")
    chip = page.locator(".phase-chip:not([data-phase=all])").first
    phase = chip.get_attribute("data-phase") or ""
    chip.click()
    page.wait_for_url(re.compile(rf".*phase={phase}"))
    expect(page.get_by_label("Phase", exact=True)).to_contain_text(phase)
    expect(every).to_have_attribute("aria-pressed", "false")
    every.click()
    page.wait_for_url(re.compile(r"^(?!.*phase=).*$"))

    # Clearing drops every filter, in the URL too.
    page.locator("#clear-filters").click()
    page.wait_for_url(re.compile(r".*/environments$"))
    expect(page.get_by_label("Search", exact=True)).to_have_value("")
    expect(rows(page).first).to_be_visible()


def test_a_phase_change_shows_on_the_open_page_without_a_reload(page: Page) -> None:
    tag = secrets.token_hex(3)
    project = create_project(page, f"slow-{tag}", command=f"sleep 6; {SERVE}")
    name, _ = create_environment(page)

    page.goto(f"/environments?project={project}")
    row = rows(page).filter(has=page.locator(f"a.env-link:text-is('{name}')"))
    expect(row).to_have_count(1)
    expect(row).not_to_have_attribute("data-phase", "ready")  # still starting (it sleeps first)
    page.evaluate("window.__not_reloaded = true")

    expect(row).to_have_attribute("data-phase", "ready", timeout=PHASE_TIMEOUT)
    expect(row.locator(".env-url")).to_be_visible()  # a ready environment shows its URL
    assert page.evaluate("window.__not_reloaded === true"), "the page was reloaded"


def test_every_form_field_is_found_by_its_label(page: Page) -> None:
    tag = secrets.token_hex(3)

    # New project (the dialog, with its container-workloads section open).
    page.goto("/")
    page.locator("#new-project").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Name", exact=True).fill(f"labels-{tag}")
    for label in ("Description", "Repository URL", "Git ref", "Command", "Health check path"):
        expect(dialog.get_by_label(label, exact=True)).to_be_editable()
    page.locator("#toggle-workloads").click()
    for label in (
        "Services (YAML)",
        "Kubernetes manifests (YAML)",
        "Egress: CIDR blocks",
        "Egress: namespaces",
    ):
        expect(dialog.get_by_label(label, exact=True)).to_be_editable()
    assert unlabelled(dialog) == []
    dialog.get_by_label("Command", exact=True).fill(SERVE)
    page.locator("#create-project").click()
    page.wait_for_url(re.compile(r".*/projects/\d+$"))
    project_url = page.url

    # The project page: secrets, and the "Create with options" dialog.
    expect(page.get_by_label("Secret name")).to_be_editable()
    expect(page.get_by_label("Secret value")).to_be_editable()
    assert unlabelled(page.locator("body")) == []
    page.locator("#create-with-options").click()
    dialog = page.get_by_role("dialog")
    for label in ("Name", "Git ref", "Command", "Environment variables"):
        expect(dialog.get_by_label(label, exact=True)).to_be_editable()
    expect(dialog.get_by_label("Kind", exact=True)).to_contain_text("development")
    assert unlabelled(dialog) == []
    page.keyboard.press("Escape")

    # An environment's page: sharing, and the agent-token dialog.
    page.goto(project_url)
    _name, environment_id = create_environment(page)
    page.goto(f"{project_url}/environments/{environment_id}")
    panel = page.locator("#access-panel")
    expect(panel.get_by_label("Share with", exact=True)).to_be_visible()
    expect(panel.get_by_label("Person (username or email)")).to_be_editable()
    expect(panel.get_by_label("Share role")).to_be_visible()
    expect(panel.get_by_label("until")).to_be_editable()
    assert unlabelled(page.locator("body")) == []
    panel.locator("#new-agent-token").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_label("Name", exact=True)).to_be_editable()
    expect(dialog.get_by_role("group", name="Scopes")).to_be_visible()
    for scope in ("read", "write", "shell"):
        expect(dialog.get_by_label(scope, exact=True)).to_be_visible()
    assert unlabelled(dialog) == []
    page.keyboard.press("Escape")

    # Teams: the new-team dialog, then a team's invitation form and members' roles.
    page.goto("/teams")
    page.locator("#new-team").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Name", exact=True).fill(f"labels-{tag}")
    expect(dialog.get_by_label("Display name", exact=True)).to_be_editable()
    assert unlabelled(dialog) == []
    page.locator("#create-team").click()
    page.wait_for_url(re.compile(r".*/teams/\d+$"))
    expect(page.get_by_label("Email address to invite")).to_be_editable()
    expect(page.get_by_label("Role of the invited person")).to_be_visible()
    assert unlabelled(page.locator("body")) == []

    # Tokens: the new-token dialog (a named group of scope checkboxes).
    page.goto("/tokens")
    page.locator("#new-token").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_label("Name", exact=True)).to_be_editable()
    expect(dialog.get_by_role("group", name="Scopes")).to_be_visible()
    for scope in ("read", "write", "shell", "admin"):
        expect(dialog.get_by_label(scope, exact=True)).to_be_visible()
    expect(dialog.get_by_label("Expires after", exact=True)).to_be_visible()
    assert unlabelled(dialog) == []
    page.keyboard.press("Escape")

    page.goto("/")
    expect(page.get_by_label("Search projects")).to_be_editable()
    assert unlabelled(page.locator("body")) == []

    # The audit log's filters, the Environments page's filters, the device page.
    page.goto("/audit")
    for label in ("Actor", "Target", "Action", "Outcome", "From (UTC)", "To (UTC)"):
        expect(page.get_by_label(label, exact=True)).to_be_visible()
    assert unlabelled(page.locator("body")) == []
    page.goto("/environments")
    for label in ("Search", "Project", "Team", "Phase", "Kind", "Trigger", "Created by"):
        expect(page.get_by_label(label, exact=True)).to_be_visible()
    assert unlabelled(page.locator("body")) == []
    page.goto("/device")
    expect(page.get_by_label("Code shown by your terminal")).to_be_editable()
    assert unlabelled(page.locator("body")) == []
