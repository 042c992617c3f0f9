"""Staging and production in the dashboard, followed as a team would.

An owner sets the project's deployment environments up on its Deployments
page (the embedded runtime's command source; production promoted from
staging with one admin's approval); CI releases a commit through the REST
API with a member's deploy-scoped token; the workers render it and land it
in staging, and staging's page card turns ready by itself (the browser
suite's envhub only pushes changes, see conftest.py). Production waits with
its approval gate ✗ until an admin, in a browser of their own, approves it
on the same page; then production turns ready, and the diff panel shows
what the two environments declare differently.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect
from sqlmodel import Session, create_engine, select

from envhub.domain import credentials
from envhub.domain.credentials import SecretKind
from envhub.models import ApiToken, Project, Team, User, WebSession
from envhub.models.base import utcnow
from tests.browser.conftest import Envhub
from tests.browser.test_dashboard import PHASE_TIMEOUT, create_project
from tests.browser.test_environments_page import unlabelled
from tests.browser.test_identity import add_people

pytestmark = [pytest.mark.browser, pytest.mark.timeout(1200)]

SERVE = "echo stage=$STAGE; exec python3 -m http.server $PORT"
COMMIT = secrets.token_hex(20)


def shots() -> Path:
    """Where the screenshots go (ENVHUB_SCREENSHOTS, else a folder in /tmp)."""
    folder = Path(os.environ.get("ENVHUB_SCREENSHOTS") or "/tmp/envhub-deployments-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Database:
    """The test envhub's own database, for what a test cannot do through a face: other people."""

    def __init__(self, envhub: Envhub) -> None:
        self.engine = create_engine(f"sqlite:///{envhub.data_dir / 'envhub.db'}")

    def team_of(self, project_id: int) -> str:
        with Session(self.engine) as session:
            project = session.get(Project, project_id)
            assert project is not None
            team = session.get(Team, project.team_id)
            assert team is not None
            return team.name

    def user_id(self, username: str) -> int:
        with Session(self.engine) as session:
            return session.exec(select(User.id).where(User.username == username)).one() or 0

    def session_cookie(self, username: str) -> str:
        """A signed-in browser session for ``username`` (as OpenID sign-in would start one)."""
        issued = credentials.issue(SecretKind.session)
        with Session(self.engine) as session:
            session.add(
                WebSession(
                    token_hash=issued.digest,
                    user_id=self.user_id(username),
                    method="local",
                    expires_at=utcnow() + timedelta(hours=2),
                )
            )
            session.commit()
        return issued.plain

    def deploy_token(self, username: str) -> str:
        """A token with the ``deploy`` scope only, as CI holds one."""
        issued = credentials.issue(SecretKind.personal_token)
        with Session(self.engine) as session:
            session.add(
                ApiToken(
                    token_hash=issued.digest,
                    hint=issued.hint,
                    kind="personal",
                    name=f"ci-{secrets.token_hex(3)}",
                    user_id=self.user_id(username),
                    scopes=["deploy"],
                    expires_at=utcnow() + timedelta(hours=2),
                )
            )
            session.commit()
        return issued.plain


@pytest.fixture
def database(envhub_server: Envhub) -> Iterator[Database]:
    db = Database(envhub_server)
    yield db
    db.engine.dispose()


def signed_in_as(browser: Browser, envhub: Envhub, cookie: str) -> BrowserContext:
    context = browser.new_context(
        base_url=envhub.base_url, viewport={"width": 1440, "height": 900}, color_scheme="light"
    )
    context.add_cookies([{"name": "envhub_session", "value": cookie, "url": envhub.base_url}])
    context.set_default_timeout(30_000)
    return context


def full_page(page: Page, name: str) -> None:
    """A full-page screenshot from the top (the sticky top bar stays where it belongs)."""
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=shots() / name, full_page=True)


def card(page: Page, name: str) -> Any:
    return page.locator(f".deploy-env[data-name={name}]")


def set_up(page: Page, project_id: int) -> None:
    """The empty state's "Set up staging and production", with what each environment declares."""
    page.goto(f"/projects/{project_id}")
    expect(page.locator("#project-deployments")).to_be_visible()
    page.screenshot(path=shots() / "project-header.png", clip={"x": 0, "y": 0, "width": 1440, "height": 260})
    page.locator("#project-deployments").click()
    page.wait_for_url(re.compile(rf".*/projects/{project_id}/deployments$"))
    expect(page.get_by_text("No deployment environments yet")).to_be_visible()
    full_page(page, "deployments-empty.png")
    page.locator("#setup-deployments").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.locator(".deploy-env-form")).to_have_count(2)
    assert unlabelled(dialog) == []
    dialog.screenshot(path=shots() / "deployments-settings.png")
    staging, production = dialog.locator(".deploy-env-form").nth(0), dialog.locator(".deploy-env-form").nth(1)
    staging.get_by_label("Environment variables").fill("STAGE=staging")
    production.get_by_label("Environment variables").fill("STAGE=production")
    # An error from the service lands under the field it names (details.field).
    production.get_by_label("Approvals needed").fill("11")
    page.locator("#deploy-save").click()
    expect(production.locator(".field-error")).to_contain_text("less than or equal to 10")
    page.screenshot(path=shots() / "deployments-settings-error.png")
    production.get_by_label("Approvals needed").fill("1")
    # Editing the field clears its error (and moves the Save button up): wait for that before saving.
    expect(production.locator(".field-error")).to_have_count(0)
    page.locator("#deploy-save").click()
    expect(dialog).to_have_count(0)
    expect(page.locator(".deploy-env")).to_have_count(2)
    expect(card(page, "production").locator(".deploy-rules")).to_contain_text("1 approval(s) (admin+)")
    expect(card(page, "production").locator(".deploy-declares")).to_contain_text("env STAGE")


def release_as_ci(envhub: Envhub, project_id: int, token: str) -> None:
    answer = httpx.post(
        f"{envhub.base_url}/api/v1/projects/{project_id}/releases",
        json={"commit": COMMIT, "ref": "main"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    assert answer.status_code in (200, 201, 202), answer.text


def test_a_release_lands_in_staging_waits_for_an_admin_and_lands_in_production(
    page: Page, browser: Browser, envhub_server: Envhub, database: Database
) -> None:
    tag = secrets.token_hex(3)
    project_id = create_project(page, f"shop-{tag}", command=SERVE)
    set_up(page, project_id)
    admin, member = f"ada-{tag}", f"mel-{tag}"
    add_people(envhub_server, database.team_of(project_id), {admin: "admin", member: "member"})

    # CI releases a commit; the open page follows it to staging without a reload.
    release_as_ci(envhub_server, project_id, database.deploy_token(member))
    staging, production = card(page, "staging"), card(page, "production")
    expect(staging).to_have_attribute("data-phase", "ready", timeout=PHASE_TIMEOUT)
    expect(staging.locator(".running-release")).to_contain_text(COMMIT[:12])
    expect(staging.locator(".running-release .release-status")).to_have_attribute("data-status", "ready")
    waiting = production.locator(".waiting-release")
    status = waiting.locator(".release-status")
    expect(status).to_have_attribute("data-status", "waiting", timeout=PHASE_TIMEOUT)
    gate = waiting.locator(".gate[data-gate=approvals]")
    expect(gate).to_have_attribute("data-passed", "false")
    expect(gate).to_contain_text("0 of 1 approval(s)")
    # The owner could approve too; this test leaves it to the admin.
    full_page(page, "deployments-waiting.png")

    # How the two differ: only what each declares.
    differences = page.locator("#deploy-differences .object-change")
    expect(differences).to_have_count(1)
    expect(differences.first.locator("summary")).to_contain_text("changed")
    differences.first.locator("summary").click()
    expect(differences.first).to_contain_text("-    STAGE: staging")
    expect(differences.first).to_contain_text("+    STAGE: production")
    page.locator("#differences").screenshot(path=shots() / "deployments-differences.png")

    # An admin, signed in in a browser of their own, approves on the same page.
    context = signed_in_as(browser, envhub_server, database.session_cookie(admin))
    try:
        theirs = context.new_page()
        theirs.goto(f"/projects/{project_id}/deployments")
        expect(theirs.locator("#signed-in-user")).to_have_text(admin)
        approve = card(theirs, "production").locator(".approve-release")
        expect(approve).to_be_visible()
        approve.click()
        expect(card(theirs, "production")).to_have_attribute("data-phase", "ready", timeout=PHASE_TIMEOUT)
    finally:
        context.close()

    # The owner's page follows: production runs the release staging ran.
    expect(production).to_have_attribute("data-phase", "ready", timeout=PHASE_TIMEOUT)
    expect(production.locator(".running-release")).to_contain_text(COMMIT[:12])
    full_page(page, "deployments-ready.png")

    # Production's own page: the release history, and the release with its approval.
    production.locator(".deploy-env-link").click()
    page.wait_for_url(re.compile(r".*/environments/\d+$"))
    rows = page.locator("#releases-table .release-row")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-status", "ready")
    full_page(page, "environment-releases.png")
    rows.first.locator(".open-release").click()
    detail = page.locator("#release-detail")
    expect(detail.locator(".gate[data-gate=approvals]")).to_have_attribute("data-passed", "true")
    expect(detail.locator(".approval")).to_contain_text(admin)
    expect(detail.locator("#release-objects")).to_contain_text("STAGE")
    detail.screenshot(path=shots() / "release-detail.png")
    page.keyboard.press("Escape")

    # Deleting a deployment environment takes its name, typed.
    page.locator("#delete-environment").click()
    confirm = page.locator("#confirm-delete")
    expect(confirm).to_be_disabled()
    page.get_by_label("Type production to confirm").fill("production")
    expect(confirm).to_be_enabled()
    page.get_by_role("alertdialog").screenshot(path=shots() / "delete-deployment-environment.png")
    confirm.click()
    expect(page.locator("#phase")).to_contain_text(re.compile("deleting|deleted"), timeout=PHASE_TIMEOUT)


def release_by_hand(page: Page, commit: str) -> None:
    page.locator("#release-commit").click()
    page.get_by_label("Commit SHA", exact=True).fill(commit)
    page.get_by_label("Ref", exact=True).fill("main")
    page.locator("#release-submit").click()
    expect(page.locator("#release-submit")).to_have_count(0)


def test_settings_as_json_a_commit_released_by_hand_and_a_rollback(page: Page) -> None:
    project_id = create_project(page, f"api-{secrets.token_hex(3)}", command=SERVE)
    set_up(page, project_id)

    # The whole document as JSON: what the form holds, and a refusal named in the callout.
    page.locator("#deploy-settings").click()
    page.locator("#deploy-advanced").click()
    document = page.locator("#deploy-json")
    expect(document).to_have_value(re.compile(r'"promote_from": "staging"'))
    document.fill('{"environments": []}')
    page.locator("#deploy-save").click()
    expect(page.locator("#deploy-settings-error")).to_contain_text("at least one deployment environment")
    page.get_by_role("dialog").get_by_role("button", name="Cancel").click()

    # "Release a commit": a short SHA is refused under its field; two full ones land in staging.
    page.locator("#release-commit").click()
    page.get_by_label("Commit SHA", exact=True).fill("abc123")
    page.locator("#release-submit").click()
    expect(page.locator(".field-error")).to_contain_text("40-character SHA")
    page.keyboard.press("Escape")
    first, second = secrets.token_hex(20), secrets.token_hex(20)
    staging = card(page, "staging")
    release_by_hand(page, first)
    expect(staging.locator(".running-release")).to_contain_text(first[:12], timeout=PHASE_TIMEOUT)
    release_by_hand(page, second)
    expect(staging.locator(".running-release")).to_contain_text(second[:12], timeout=PHASE_TIMEOUT)

    # On staging's page: #1 was superseded by #2; rolling back to it is release #3.
    staging.locator(".deploy-env-link").click()
    page.wait_for_url(re.compile(r".*/environments/\d+$"))
    rows = page.locator("#releases-table .release-row")
    expect(rows).to_have_count(2)
    page.locator(".release-row[data-number='1'] .open-release").click()
    detail = page.locator("#release-detail")
    expect(detail).to_contain_text(first)
    # Against what runs (#2, the same command): nothing changes; against itself neither.
    expect(detail.locator("#release-changes")).to_contain_text("nothing changes")
    detail.locator("#release-rollback").click()
    expect(rows).to_have_count(3)
    expect(page.locator(".release-row[data-number='3']")).to_contain_text("rollback")
    expect(page.locator(".release-row[data-number='3']")).to_have_attribute(
        "data-status", "ready", timeout=PHASE_TIMEOUT
    )
    expect(page.locator(".release-row[data-running=true]")).to_have_attribute("data-number", "3")
    detail.screenshot(path=shots() / "release-detail-rollback.png")
    page.keyboard.press("Escape")
    full_page(page, "environment-releases-rollback.png")

    # The same page in the dark: the cards, the waiting release and an opened diff.
    page.emulate_media(color_scheme="dark")
    page.goto(f"/projects/{project_id}/deployments")
    expect(page.locator("html.dark")).to_have_count(1)
    page.locator("#deploy-differences .object-change summary").first.click()
    full_page(page, "deployments-dark.png")
