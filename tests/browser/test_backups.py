"""Backups of a managed PostgreSQL in Chromium: taken from the Services panel, restored after a mistake.

The owner declares a PostgreSQL on the project page and creates an
environment whose app writes two rows through DATABASE_URL. Under the
database in the Services panel there is nothing backed up yet; "Back up now"
takes one on envhub's worker (pg_dump of the embedded server), and the open
page follows it to "succeeded" with its size and checksum. In the browser
terminal the rows are deleted; "Restore" on the backup asks for a
confirmation that says what happens, the restore runs (after backing up what
it replaces) and the rows are back. A team viewer sees the same backups
without the buttons.

Staging, a deployment environment, is backed up on its schedule by the
reconciler and each backup is checked in a scratch database. Restoring into
it takes the environment's name, typed, and a team owner: a member who types
it is told so in the dialog.
"""

from __future__ import annotations

import re
import secrets

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlmodel import Session, select

from envhub.models import BackupState, BackupTrigger, ServiceBackup, ServiceInstance
from envhub.models.base import utcnow
from tests.browser.conftest import Envhub
from tests.browser.test_dashboard import PHASE_TIMEOUT, create_environment, create_project
from tests.browser.test_deployments_page import (
    Database,
    full_page,
    release_as_ci,
    set_up,
    shots,
    signed_in_as,
)
from tests.browser.test_identity import add_people
from tests.browser.test_terminal import run
from tests.support.components import require_path

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]

JOB_TIMEOUT = 120_000


def _app() -> str:
    """Writes two rows (40 and 2) through DATABASE_URL, keeps the URL for the terminal, serves files."""
    psql = require_path("postgresql") / "psql"
    return (
        f'{psql} "$DATABASE_URL" -v ON_ERROR_STOP=1 -tAc '
        "'create table if not exists t (x int); insert into t values (40), (2)' > db.out 2>&1; "
        'printf %s "$DATABASE_URL" > url.out; exec python3 -m http.server $PORT'
    )


def _shot(page: Page, selector: str, name: str) -> None:
    """A picture of one element, taken with the page scrolled to the top (where the sticky bar belongs)."""
    page.evaluate("window.scrollTo(0, 0)")
    box = page.locator(selector).bounding_box()
    assert box is not None, selector
    page.screenshot(path=shots() / name, full_page=True, clip=box)


def _declare_postgres(page: Page) -> None:
    """On the project page: a managed service named db (PostgreSQL, the kind unless another is picked)."""
    setting = page.locator("#managed-services-setting")
    setting.get_by_label("Service name").fill("db")
    setting.get_by_role("button", name="Add service").click()
    expect(setting.locator(".declared-service")).to_contain_text("DATABASE_URL")


def _sql(page: Page, statement: str, answer: str) -> None:
    """Run ``statement`` with psql in the environment's terminal (as its app connects); wait for ``answer``.

    The output is tagged with a number the shell computes, so neither the typed line nor an earlier
    answer still on the screen can match.
    """
    psql = require_path("postgresql") / "psql"
    tag = secrets.randbelow(10**6)
    page.locator("#terminal-screen").click()  # the keyboard goes to the shell, wherever it was
    command = f'echo "out-$(({tag}+0))=$({psql} "$(cat url.out)" -tAc \'{statement}\')"'
    run(page, command, f"out-{tag}={answer}")


def test_a_backup_is_taken_from_the_page_and_a_restore_brings_deleted_rows_back(
    page: Page, browser: Browser, envhub_server: Envhub
) -> None:
    project_id = create_project(page, f"ledger-{secrets.token_hex(3)}", command=_app())
    _declare_postgres(page)
    _, environment_id = create_environment(page)
    environment = f"/projects/{project_id}/environments/{environment_id}"
    page.goto(environment)
    expect(page.locator("#phase")).to_contain_text("ready", timeout=PHASE_TIMEOUT)

    # Nothing backed up yet: the empty state, with its button; a development database is backed up on demand.
    backups = page.locator(".backups[data-service='db']")
    expect(backups.locator(".backups-empty .last-backup")).to_have_text("No backups yet")
    expect(backups.locator(".backup-schedule")).to_have_text("Backups on demand, kept 7 days")
    expect(backups.locator(".backup-row")).to_have_count(0)
    _shot(page, "#managed-services", "backups-empty.png")

    backups.get_by_role("button", name="Back up now").click()
    expect(page.get_by_text("Backing up db")).to_be_visible()
    row = backups.locator(".backup-row[data-trigger=manual]")
    expect(row).to_have_attribute("data-state", "succeeded", timeout=JOB_TIMEOUT)  # pushed, not reloaded
    expect(row).to_contain_text(re.compile(r"\d+(\.\d)? kB"))
    expect(row).to_contain_text("On demand")
    expect(row.locator(".backup-sha")).to_have_text(re.compile(r"^[0-9a-f]{12}$"))
    expect(backups.locator(".last-backup")).to_have_text(re.compile(r"^Last backup .+ · \d+(\.\d)? kB$"))
    expect(backups.get_by_role("button", name="Back up now")).to_be_enabled()
    row.locator(".backup-sha").hover()
    expect(page.get_by_role("tooltip")).to_contain_text(re.compile(r"SHA-256 [0-9a-f]{64}"))

    # A mistake inside the environment: the rows are gone.
    expect(page.locator("#terminal-status")).to_have_attribute("data-status", "connected", timeout=60_000)
    _sql(page, "select sum(x) from t", "42")
    _sql(page, "delete from t", "DELETE 2")

    # Restore: the dialog says what happens; the page follows the restore to its end.
    row.locator(".restore-backup").click()
    dialog = page.get_by_role("alertdialog")
    expect(dialog).to_contain_text("The database's current contents are backed up first, then replaced")
    expect(dialog.locator("#restore-confirm-name")).to_have_count(0)  # a development environment
    dialog.screenshot(path=shots() / "backups-restore-dialog.png")
    dialog.locator("#confirm-restore").click()
    expect(dialog).to_have_count(0)
    restored = backups.locator(".restore-row[data-purpose=restore]")
    expect(restored).to_have_attribute("data-state", "succeeded", timeout=JOB_TIMEOUT)
    expect(restored).to_contain_text("1 table, 2 rows")
    # What it replaced (the emptied table) was backed up first, and is restorable in turn.
    safety = backups.locator(".backup-row[data-trigger=before_restore]")
    expect(safety).to_have_attribute("data-state", "succeeded")
    expect(safety).to_contain_text("Before a restore")
    expect(safety.locator(".restore-backup")).to_be_visible()
    _sql(page, "select sum(x) from t", "42")
    _shot(page, "#managed-services", "backups.png")

    # A viewer of the team sees the backups and restores, not the buttons.
    database = Database(envhub_server)
    viewer = f"vic-{secrets.token_hex(3)}"
    try:
        add_people(envhub_server, database.team_of(project_id), {viewer: "viewer"})
        context = signed_in_as(browser, envhub_server, database.session_cookie(viewer))
    finally:
        database.engine.dispose()
    try:
        theirs = context.new_page()
        theirs.goto(environment)
        seen = theirs.locator(".backups[data-service='db']")
        expect(seen.locator(".backup-row")).to_have_count(2)
        expect(seen.locator(".restore-row[data-purpose=restore]")).to_contain_text("1 table, 2 rows")
        expect(seen.get_by_role("button", name="Back up now")).to_have_count(0)
        expect(seen.locator(".restore-backup")).to_have_count(0)
    finally:
        context.close()
    full_page(page, "backups-page.png")
    page.emulate_media(color_scheme="dark")
    expect(page.locator("html.dark")).to_have_count(1)
    _shot(page, "#managed-services", "backups-dark.png")


def _failed_backup(envhub: Envhub, environment_id: int) -> None:
    """Test set-up: a scheduled backup of db that failed (tests/integration/test_backups.py has real ones)."""
    database = Database(envhub)
    try:
        with Session(database.engine) as session:
            instance = session.exec(
                select(ServiceInstance).where(
                    ServiceInstance.environment_id == environment_id, ServiceInstance.service == "db"
                )
            ).one()
            session.add(
                ServiceBackup(
                    instance_id=instance.id or 0,
                    environment_id=environment_id,
                    project_id=instance.project_id,
                    service="db",
                    trigger=BackupTrigger.schedule,
                    requested_by="envhub",
                    state=BackupState.failed,
                    attempts=3,
                    error="pg_dump exited with 1: connection to server failed: FATAL: too many connections",
                    error_code="backing_service_unavailable",
                    finished_at=utcnow(),
                )
            )
            session.commit()
    finally:
        database.engine.dispose()


def test_staging_is_backed_up_on_schedule_and_only_its_owner_restores_it_by_typing_its_name(
    page: Page, browser: Browser, envhub_server: Envhub
) -> None:
    tag = secrets.token_hex(3)
    project_id = create_project(page, f"orders-{tag}", command=_app())
    page.goto(f"/projects/{project_id}")
    _declare_postgres(page)
    set_up(page, project_id)
    database = Database(envhub_server)
    member = f"mia-{tag}"
    try:
        add_people(envhub_server, database.team_of(project_id), {member: "member"})
        release_as_ci(envhub_server, project_id, database.deploy_token(member))
        cookie = database.session_cookie(member)
    finally:
        database.engine.dispose()
    staging = page.locator(".deploy-env[data-name=staging]")
    expect(staging).to_have_attribute("data-phase", "ready", timeout=PHASE_TIMEOUT)
    staging.locator(".deploy-env-link").click()
    page.wait_for_url(re.compile(r".*/environments/\d+$"))
    environment = page.url
    environment_id = int(environment.rsplit("/", 1)[1])

    # The reconciler backs staging up by itself, then restores the backup into a scratch database to check it.
    backups = page.locator(".backups[data-service='db']")
    expect(backups.locator(".backup-schedule")).to_have_text("Backups every 24 h, kept 7 days")
    scheduled = backups.locator(".backup-row[data-trigger=schedule]")
    expect(scheduled).to_have_attribute("data-state", "succeeded", timeout=JOB_TIMEOUT)
    expect(scheduled).to_contain_text("Scheduled")
    expect(scheduled).to_contain_text("passed: 1 table, 2 rows", timeout=JOB_TIMEOUT)
    expect(backups.locator(".restore-row[data-purpose=check]")).to_have_attribute("data-state", "succeeded")

    # A member may back up and may ask, but only an owner replaces a deployment environment's database.
    context = signed_in_as(browser, envhub_server, cookie)
    try:
        theirs = context.new_page()
        theirs.goto(environment)
        expect(theirs.locator("#signed-in-user")).to_have_text(member)
        theirs.locator(
            ".backups[data-service='db'] .backup-row[data-trigger=schedule] .restore-backup"
        ).click()
        dialog = theirs.get_by_role("alertdialog")
        expect(dialog).to_contain_text("only a team owner can replace its database")
        confirm = dialog.locator("#confirm-restore")
        expect(confirm).to_be_disabled()
        dialog.get_by_label("Type staging to confirm").fill("staging")
        expect(confirm).to_be_enabled()
        confirm.click()
        expect(dialog.locator("#restore-error")).to_contain_text("only a team owner may replace its database")
        expect(dialog.locator("#restore-error")).to_contain_text("forbidden")
        dialog.screenshot(path=shots() / "backups-restore-refused.png")
    finally:
        context.close()
    expect(backups.locator(".restore-row[data-purpose=restore]")).to_have_count(0)

    # The owner types the name and the restore runs.
    scheduled.locator(".restore-backup").click()
    dialog = page.get_by_role("alertdialog")
    dialog.get_by_label("Type staging to confirm").fill("staging")
    dialog.screenshot(path=shots() / "backups-restore-deployment.png")
    dialog.locator("#confirm-restore").click()
    expect(dialog).to_have_count(0)
    restored = backups.locator(".restore-row[data-purpose=restore]")
    expect(restored).to_have_attribute("data-state", "succeeded", timeout=JOB_TIMEOUT)
    expect(restored).to_contain_text("1 table, 2 rows")

    # A failed backup puts a warning at the top of the section, and its error on its state.
    _failed_backup(envhub_server, environment_id)
    page.reload()
    warning = backups.locator(".backup-warning")
    expect(warning).to_contain_text("The last backup failed just now: pg_dump exited with 1")
    expect(backups.locator(".backup-row[data-state=failed]")).to_contain_text("failed")
    expect(backups.locator(".last-backup")).to_have_text(re.compile(r"^Last backup .+ · \d+(\.\d)? kB$"))
    _shot(page, "#managed-services", "backups-staging.png")
