"""A real envhub (launcher, embedded Redis, worker, Reflex prod build) and a real Chromium.

The server is started once per session exactly as ``make run`` does, on a free
port with its own data folder: SQLite and the embedded Redis (the developer's
ENVHUB_DATABASE_URL / ENVHUB_REDIS_URL are removed). It offers the shipped
example catalog of other services (deploy/catalog.example.yaml): a setting read
from a file, which costs the other tests nothing (a catalog entry is only
declared, never run, on the local runtime); and it has prices (:data:`PRICES`),
so the cost pages show amounts. Playwright is driven
through its sync API; no pytest-playwright.

Sign-in works as for a person: the one-time link the launcher prints is opened
once, and every test's browser context starts with that session's cookie
(``page``); ``anonymous_page`` has none. ``login_link()`` prints fresh links.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, WebSocket, sync_playwright

from envhub.config import PROJECT_ROOT
from tests.support.components import require
from tests.support.net import free_port
from tests.support.waiting import wait_for

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
EXAMPLE_CATALOG = PROJECT_ROOT / "deploy" / "catalog.example.yaml"
# The operator's prices (domain/costs.py), high enough that the minutes a test runs cost cents,
# in a currency other than the default, so the cost pages show real amounts in the configured one.
PRICES = {
    "ENVHUB_PRICE_CPU_HOUR": "30",
    "ENVHUB_PRICE_MEMORY_GIB_HOUR": "10",
    "ENVHUB_PRICE_CURRENCY": "EUR",
}
# The first start builds the frontend (bun install + vite): minutes on a cold machine.
START_TIMEOUT = 900.0


@dataclass(frozen=True)
class Envhub:
    base_url: str
    data_dir: Path
    log: Path

    def printed_login_link(self) -> str:
        found = re.search(r"Sign in \(one-time link\): (\S+)", self.log.read_text(errors="replace"))
        assert found, f"the launcher printed no login link\n{self.log_tail()}"
        return found.group(1)

    def login_link(self) -> str:
        """A fresh one-time link, as `python -m envhub.launcher login-link` prints it."""
        done = subprocess.run(
            [sys.executable, "-m", "envhub.launcher", "login-link"],
            cwd=PROJECT_ROOT,
            env={**_server_env(), "ENVHUB_BASE_URL": self.base_url, "ENVHUB_DATA_DIR": str(self.data_dir)},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout.strip()

    def log_tail(self, lines: int = 60) -> str:
        parts = []
        for path in (self.log, self.data_dir / "logs" / "web.log", self.data_dir / "logs" / "worker.log"):
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path}\n" + "\n".join(text))
        return "\n".join(parts)


def chromium_path() -> str | None:
    return os.environ.get("ENVHUB_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def _server_env() -> dict[str, str]:
    """This process's environment without the developer's ENVHUB_* settings."""
    own = {k: v for k, v in os.environ.items() if not k.startswith("ENVHUB_")}
    return {**own, **{k: v for k, v in os.environ.items() if k.startswith("ENVHUB_TEST_")}}


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # loopback URL we built
            return bool(response.status == 200)
    except OSError:
        return False


@contextlib.contextmanager
def launch(data_dir: Path, port: int, **extra_env: str) -> Iterator[Envhub]:
    """``python -m envhub.launcher run`` on ``port``, until the block ends."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / "launcher.log"
    env = _server_env()
    env.update(
        ENVHUB_BASE_URL=f"http://localhost:{port}",
        ENVHUB_DATA_DIR=str(data_dir),
        PYTHONUNBUFFERED="1",
        # No periodic reload of open pages: only pushed changes reach them, so a
        # broken pub/sub fails the browser tests instead of hiding behind polling.
        ENVHUB_LIVE_REFRESH_SECONDS="0",
    )
    env.update(extra_env)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "envhub.launcher", "run", "--start-timeout", str(START_TIMEOUT)],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Envhub(base_url=f"http://localhost:{port}", data_dir=data_dir, log=log)
    try:
        wait_for(
            lambda: proc.poll() is not None or "envhub is running" in log.read_text(errors="replace"),
            timeout=START_TIMEOUT + 30,
            interval=0.5,
            what="the launcher to print its URL",
            describe=server.log_tail,
        )
        if proc.poll() is not None:
            pytest.fail(f"envhub exited with {proc.returncode} during start-up\n{server.log_tail()}")
        wait_for(lambda: _healthy(f"{server.base_url}/healthz"), timeout=60, what="/healthz")
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture(scope="session")
def envhub_server(request: pytest.FixtureRequest) -> Iterator[Envhub]:
    """The suite's envhub. Its data folder sits right under /tmp, not in pytest's (a 0700 folder):
    as root the embedded PostgreSQL of managed services runs as `postgres`, which must pass through
    every parent folder. Kept after a failed run, for its logs."""
    folder = Path(tempfile.mkdtemp(prefix="envhub-browser-", dir="/tmp"))
    failed_before = request.session.testsfailed
    try:
        with launch(folder, free_port(), ENVHUB_SERVICES_CATALOG=str(EXAMPLE_CATALOG), **PRICES) as server:
            yield server
    finally:
        if request.session.testsfailed > failed_before:
            print(f"\nenvhub's data folder (logs/) is kept: {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def playwright_instance() -> Iterator[Playwright]:
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="session")
def browser(playwright_instance: Playwright) -> Iterator[Browser]:
    executable = str(require("chromium"))
    browser = playwright_instance.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture(scope="session")
def signed_in(browser: Browser, envhub_server: Envhub) -> dict[str, Any]:
    """The cookies of a session started through the link ``make run`` printed."""
    context = browser.new_context(base_url=envhub_server.base_url)
    page = context.new_page()
    page.goto(envhub_server.printed_login_link())
    page.wait_for_url(f"{envhub_server.base_url}/")
    state: dict[str, Any] = dict(context.storage_state())
    context.close()
    return state


def _context(browser: Browser, envhub_server: Envhub, state: dict[str, Any] | None) -> BrowserContext:
    context = browser.new_context(
        base_url=envhub_server.base_url,
        viewport={"width": 1440, "height": 900},
        color_scheme="light",
        storage_state=state,  # type: ignore[arg-type]
    )
    context.set_default_timeout(30_000)
    return context


@pytest.fixture
def page(browser: Browser, envhub_server: Envhub, signed_in: dict[str, Any]) -> Iterator[Page]:
    context = _context(browser, envhub_server, signed_in)
    yield context.new_page()
    context.close()


class SocketFrames:
    """Everything the server sends a page over its WebSockets (Reflex's state and events), in order.

    What the page shows is not enough to prove a value never reached the
    browser: a value sent and cleared a moment later is gone from the page
    before a test can read it, but not from this record.
    """

    def __init__(self, page: Page) -> None:
        self._page = page
        self.received: list[str] = []
        page.on("websocket", self._opened)

    def _opened(self, socket: WebSocket) -> None:
        socket.on("framereceived", self._received)

    def _received(self, payload: str | bytes) -> None:
        self.received.append(payload if isinstance(payload, str) else payload.decode("utf-8", "replace"))

    def mark(self) -> int:
        """Where the frames received from now on start (for ``since=``)."""
        return len(self.received)

    def containing(self, text: str, *, since: int = 0) -> list[str]:
        return [frame for frame in self.received[since:] if text in frame]

    def wait_for_text(self, text: str, *, since: int = 0) -> None:
        """Until a frame received after ``since`` contains ``text``.

        Playwright's sync API delivers events only while it runs a call, so
        the waiting is done by the page, not by sleeping here.
        """

        def arrived() -> list[str]:
            self._page.wait_for_timeout(100)
            return self.containing(text, since=since)

        wait_for(arrived, timeout=30, what=f"a WebSocket frame with {text!r}")


@pytest.fixture
def frames(page: Page) -> SocketFrames:
    """The WebSocket frames ``page`` receives, recorded from its first navigation on."""
    return SocketFrames(page)


@pytest.fixture
def anonymous_page(browser: Browser, envhub_server: Envhub) -> Iterator[Page]:
    context = _context(browser, envhub_server, None)
    yield context.new_page()
    context.close()
