"""The dashboard's pages at scale, in headless Chromium, against the production build.

envhub is started as ``make run`` starts it (``python -m envhub.launcher
run``: the Reflex production build, ``reflex run --env prod``, served on one
port), on the seeded PostgreSQL and the bench's redis, with no worker (the
seeded runs in flight must not be driven). The local person signs in through
the one-time link the launcher prints and is made a member of the teams the
benchmarking person is in, so they see the same projects and environments.

A page's time is from ``goto`` to its first row on screen: the document, the
scripts (cached after the warm-up, as for someone who uses the dashboard),
the WebSocket, the page's ``on_load`` event and its state rendered.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from playwright.sync_api import Page, sync_playwright
from sqlmodel import Session, select

from bench.scale_world import World
from bench.servers import ROOT
from envhub.models import Membership, Role, User
from envhub.models.db import engine_for
from envhub.runtime.local.processes import free_port
from envhub.services.identity import LOCAL_USERNAME

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
START_TIMEOUT = 900.0
ROW = re.compile(r"^pr-\d+$")


@dataclass
class PageTimes:
    seconds: dict[str, list[float]]

    def median(self, name: str) -> float:
        return statistics.median(self.seconds[name])

    def worst(self, name: str) -> float:
        return max(self.seconds[name])


@contextlib.contextmanager
def launched(database_url: str, redis_url: str, data_dir: Path) -> Iterator[tuple[str, str]]:
    """envhub as ``make run`` starts it; yields its URL and the printed one-time sign-in link."""
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / "launcher.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENVHUB_")}
    env.update(
        ENVHUB_BASE_URL=f"http://localhost:{port}",
        ENVHUB_DATA_DIR=str(data_dir),
        ENVHUB_DATABASE_URL=database_url,
        ENVHUB_REDIS_URL=redis_url,
        ENVHUB_LIVE_REFRESH_SECONDS="0",
        PYTHONUNBUFFERED="1",
    )
    argv = [sys.executable, "-m", "envhub.launcher", "run", "--workers", "0"]
    argv += ["--start-timeout", str(START_TIMEOUT)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT + 30
        link = None
        while link is None:
            text = log.read_text(errors="replace")
            found = re.search(r"Sign in \(one-time link\): (\S+)", text)
            link = found.group(1) if found else None
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"envhub did not start; its log:\n{text[-3000:]}")
            time.sleep(0.5)
        yield f"http://localhost:{port}", link
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def share_the_benchmarkers_teams(database_url: str, world: World) -> None:
    """The local person (who signs in by link) joins the teams the benchmarking person is in."""
    with Session(engine_for(database_url)) as session:
        local = session.exec(select(User).where(User.username == LOCAL_USERNAME)).one()
        assert local.id is not None
        teams = session.exec(select(Membership.team_id).where(Membership.user_id == world.user_id)).all()
        for team_id in teams:
            session.add(Membership(team_id=team_id, user_id=local.id, role=Role.member))
        session.commit()


def _first_row(page: Page, url: str, first: str | re.Pattern[str]) -> float:
    started = time.perf_counter()
    page.goto(url, wait_until="commit")
    page.get_by_text(first, exact=True).first.wait_for(state="visible", timeout=60_000)
    return time.perf_counter() - started


def measure_pages(
    sites: list[tuple[str, World]], redis_url: str, workdir: Path, runs: int
) -> list[PageTimes]:
    """Each page's time in each world (``sites``: database URL and world), one world's envhub after
    the other (two cannot run from one checkout at once: the production build names its port)."""
    chromium = os.environ.get("ENVHUB_CHROMIUM") or shutil.which("chromium")
    if chromium is None:
        raise RuntimeError("Chromium is not installed (`make test-system-deps` installs it)")
    times: list[PageTimes] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            for n, (url, world) in enumerate(sites):
                with launched(url, redis_url, workdir / f"pages-{n}") as (base, link):
                    share_the_benchmarkers_teams(url, world)
                    context = browser.new_context(base_url=base, viewport={"width": 1440, "height": 900})
                    tab = context.new_page()
                    tab.goto(link)
                    tab.wait_for_url(f"{base}/", timeout=120_000)
                    seconds: dict[str, list[float]] = {}
                    for name, (path, first) in _pages(world).items():
                        _first_row(tab, path, first)  # warm-up: scripts cached, as for a regular user
                        seconds[name] = [_first_row(tab, path, first) for _ in range(runs)]
                    context.close()
                times.append(PageTimes(seconds))
        finally:
            browser.close()
    return times


def _pages(world: World) -> dict[str, tuple[str, str | re.Pattern[str]]]:
    """Each page measured: its path and the first row's text (a row of the first page)."""
    return {
        "projects page (/)": ("/", "service-0"),
        "a project's environments (/projects/ID)": (f"/projects/{world.projects[0]}", ROW),
        "all environments (/environments)": ("/environments", ROW),
    }
