"""The terminal as a person uses it: real envhub, real Chromium, real shells.

One environment serves the whole module (creating it is the slow part). Each
test opens the environment page and types into xterm; what the shell prints
is read back from xterm's rendered rows.
"""

from __future__ import annotations

import re
import secrets
import time
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import Envhub

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]

READY_TIMEOUT = 180_000


@pytest.fixture(scope="module")
def environment_url(browser: Browser, envhub_server: Envhub, signed_in: dict[str, Any]) -> str:
    """A ready environment's page (its project serves files with http.server)."""
    context = browser.new_context(
        base_url=envhub_server.base_url,
        viewport={"width": 1440, "height": 900},
        storage_state=signed_in,  # type: ignore[arg-type]
    )
    page = context.new_page()
    page.goto("/")
    page.locator("#new-project").click()
    page.locator("#project-name").fill(f"term-{secrets.token_hex(3)}")
    page.locator("#project-command").fill("python3 -m http.server $PORT")
    page.locator("#create-project").click()
    page.wait_for_url(re.compile(r".*/projects/\d+$"))
    page.locator("#create-environment").click()
    page.locator(".env-link").first.click()
    page.wait_for_url(re.compile(r".*/environments/\d+$"))
    expect(page.locator("#phase")).to_contain_text("ready", timeout=READY_TIMEOUT)
    url = page.url
    context.close()
    return url


def screen(page: Page):  # type: ignore[no-untyped-def]
    return page.locator("#terminal-screen .xterm-rows")


def open_terminal(page: Page, url: str) -> None:
    page.goto(url)
    expect(page.locator("#terminal-status")).to_have_attribute("data-status", "connected", timeout=60_000)
    page.locator("#terminal-screen").click()


def run(page: Page, command: str, expect_text: str | re.Pattern[str], timeout: float = 30_000) -> None:
    page.keyboard.type(command)
    page.keyboard.press("Enter")
    expect(screen(page)).to_contain_text(expect_text, timeout=timeout)


def stty_size(page: Page, tag: str) -> tuple[int, int]:
    run(page, f"echo {tag} $(stty size) {tag}", re.compile(rf"{tag} \d+ \d+ {tag}"))
    text = screen(page).inner_text()
    found = re.findall(rf"{tag} (\d+) (\d+) {tag}", text)
    assert found, text
    rows, cols = found[-1]
    return int(rows), int(cols)


def session_of(page: Page, environment_url: str) -> str:
    """The id of the session the page drives (kept in the tab's sessionStorage)."""
    environment_id = environment_url.rsplit("/", 1)[1]
    saved = page.evaluate(f"sessionStorage.getItem('envhub.terminal.{environment_id}')")
    found = re.search(r'"id":"([^"]+)"', saved or "")
    assert found, saved
    return found.group(1)


def test_type_a_command_and_see_its_output(page: Page, environment_url: str) -> None:
    open_terminal(page, environment_url)
    run(page, "echo hello-$((6*7))", "hello-42")
    expect(page.locator("#terminal-status")).to_contain_text("Connected")


def test_the_shell_survives_a_reload(page: Page, environment_url: str) -> None:
    open_terminal(page, environment_url)
    run(page, "export X=42; echo exported", "exported")
    page.reload()
    open_terminal(page, environment_url)
    expect(screen(page)).to_contain_text("exported")  # the screen is restored as it was
    run(page, "echo X=$X", "X=42")


def test_resizing_the_window_resizes_the_terminal(page: Page, environment_url: str) -> None:
    open_terminal(page, environment_url)
    before = stty_size(page, "S1")
    page.set_viewport_size({"width": 900, "height": 700})
    page.wait_for_timeout(500)
    page.locator("#terminal-full").click()  # full window: a much larger terminal
    page.wait_for_timeout(500)
    page.locator("#terminal-screen").click()
    after = stty_size(page, "S2")
    assert after != before
    assert after[0] > before[0]  # the full-window terminal is taller than the panel
    page.locator("#terminal-full").click()


def test_a_flood_is_interrupted_by_ctrl_c_and_the_page_stays_responsive(
    page: Page, environment_url: str
) -> None:
    open_terminal(page, environment_url)
    page.keyboard.type("yes envhub-flood")
    page.keyboard.press("Enter")
    expect(screen(page)).to_contain_text("envhub-flood")
    page.wait_for_timeout(3000)
    started = time.monotonic()
    assert page.evaluate("1 + 1") == 2  # the tab's main thread still answers
    assert time.monotonic() - started < 5
    page.keyboard.press("Control+c")
    run(page, "echo back-$((1+1))", "back-2", timeout=20_000)


def test_a_teammate_watches_the_same_session(
    browser: Browser, page: Page, environment_url: str, signed_in: dict[str, Any]
) -> None:
    open_terminal(page, environment_url)
    # Single-user mode: the "teammate" is the same person in a second browser.
    watcher = browser.new_context(viewport={"width": 1280, "height": 860}, storage_state=signed_in)  # type: ignore[arg-type]
    other = watcher.new_page()
    other.goto(f"{environment_url}?terminal={session_of(page, environment_url)}")
    expect(other.locator("#terminal-watching")).to_be_visible(timeout=60_000)
    run(page, "echo shared-$((3*3))", "shared-9")
    expect(screen(other)).to_contain_text("shared-9")
    expect(page.locator(".term-avatar")).to_have_count(2)
    other.locator("#terminal-screen").click()
    other.keyboard.type("echo from-the-watcher")
    page.wait_for_timeout(500)
    expect(screen(page)).not_to_contain_text("from-the-watcher")
    watcher.close()


def test_running_sessions_can_be_joined_from_the_panel(
    browser: Browser, page: Page, environment_url: str, signed_in: dict[str, Any]
) -> None:
    open_terminal(page, environment_url)
    run(page, "echo listed-$((2*4))", "listed-8")
    teammate = browser.new_context(viewport={"width": 1280, "height": 860}, storage_state=signed_in)  # type: ignore[arg-type]
    other = teammate.new_page()
    open_terminal(other, environment_url)  # their own shell first
    other.locator("#terminal-sessions").click(timeout=30_000)
    other.locator(f".term-session-item[data-session='{session_of(page, environment_url)}']").click()
    expect(other.locator("#terminal-watching")).to_be_visible(timeout=30_000)
    expect(screen(other)).to_contain_text("listed-8")
    teammate.close()


def test_an_ended_session_can_be_replayed(page: Page, environment_url: str) -> None:
    open_terminal(page, environment_url)
    run(page, "echo recorded-$((5*5))", "recorded-25")
    page.locator("#terminal-end").click()
    expect(page.locator("#terminal-status")).to_contain_text("Ended", timeout=30_000)
    replay = page.locator(".replay-recording").first
    expect(replay).to_be_visible(timeout=30_000)
    replay.click()
    player = page.locator("#terminal-player")
    expect(player.locator(".xterm-rows")).to_contain_text("recorded-25", timeout=30_000)
    page.keyboard.press("Escape")


def test_signing_out_elsewhere_ends_the_shell_and_the_terminal_says_so(
    browser: Browser, envhub_server: Envhub, environment_url: str
) -> None:
    # A session of its own: signing out must not end the one the other tests share.
    context = browser.new_context(base_url=envhub_server.base_url, viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.goto(envhub_server.login_link())
    page.wait_for_url(f"{envhub_server.base_url}/")
    open_terminal(page, environment_url)
    run(page, "echo before-$((4*4))", "before-16")
    other_tab = context.new_page()
    other_tab.goto("/")
    other_tab.locator("#sign-out").click()
    other_tab.wait_for_url(re.compile(r".*/sign-in.*"))
    status = page.locator("#terminal-status")
    expect(status).to_have_attribute("data-status", "access_ended", timeout=15_000)
    expect(status).to_contain_text("Access ended")
    page.wait_for_timeout(4000)  # and it stays so: no reconnecting in a loop
    expect(status).to_have_attribute("data-status", "access_ended")
    context.close()
