"""Changes reach an open page through Redis pub/sub, with the periodic reload switched off.

The browser suite's envhub runs with ``ENVHUB_LIVE_REFRESH_SECONDS=0`` (see
conftest.py), so nothing but a pushed notification reloads a page. This test
shows both halves: a change written to the database behind envhub's back (no
notification) stays off the open page, then the same page shows it as soon
as the project's channel is notified on envhub's own (embedded) Redis.
"""

from __future__ import annotations

import re
import secrets
import sqlite3
import time

import pytest
from playwright.sync_api import Page, expect
from redis import Redis

from envhub.queue.events import project_channel
from envhub.ui.live import IDLE_CHECK_SECONDS
from tests.browser.conftest import Envhub
from tests.browser.test_dashboard import create_project, unique

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]


def embedded_redis(envhub: Envhub) -> Redis:
    """A client of the Redis that envhub's launcher started (its port and password are in the data folder)."""
    folder = envhub.data_dir / "redis"
    port = re.search(r"^port (\d+)$", (folder / "redis.conf").read_text(), re.MULTILINE)
    assert port, "the embedded Redis's config names no port"
    password = (folder / "password").read_text().strip()
    return Redis(host="127.0.0.1", port=int(port.group(1)), password=password, socket_timeout=5)


def test_a_pushed_change_reaches_an_open_page_and_nothing_else_reloads_it(
    page: Page, envhub_server: Envhub
) -> None:
    project_id = create_project(page, unique("live"), command="true", description="before the change")
    page.goto(f"/projects/{project_id}")
    expect(page.get_by_text("before the change")).to_be_visible()

    changed = f"changed behind envhub's back {secrets.token_hex(3)}"
    with sqlite3.connect(envhub_server.data_dir / "envhub.db") as db:
        db.execute("UPDATE project SET description = ? WHERE id = ?", (changed, project_id))
    # Several idle wake-ups of the page's watch loop pass: no periodic reload happens.
    time.sleep(3 * IDLE_CHECK_SECONDS)
    expect(page.get_by_text("before the change")).to_be_visible()
    expect(page.get_by_text(changed)).to_have_count(0)

    with embedded_redis(envhub_server) as redis:
        assert redis.publish(project_channel(project_id), b"1") >= 1, "no page is subscribed"
    expect(page.get_by_text(changed)).to_be_visible(timeout=15_000)
