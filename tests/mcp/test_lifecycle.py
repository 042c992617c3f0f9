"""An agent's whole loop over MCP on the local runtime, with real workers:
create → wait → URL → run commands (exit code, output, cap, timeout) → logs → events → delete;
and the same agent testing its environment's public URL with Playwright from inside it.
"""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from envhub.config import Settings
from envhub.models import Project
from envhub.runtime.local import LocalRuntime
from tests.mcp.conftest import Agent
from tests.support.components import require
from tests.support.runtime import kill_environments
from tests.support.workers import Workers
from tests.terminal.harness import People, Serve
from tests.terminal.signin import agent_token

pytestmark = pytest.mark.slow

COMMAND = "echo started-by-mcp; echo hello from mcp > index.html; exec python3 -m http.server $PORT"


@pytest.fixture
def workers(settings: Settings, tmp_path: Path) -> Iterator[Workers]:
    # Every environment is lent the machine's Chromium and envhub's Playwright (README, browser testing).
    pool = Workers(settings, tmp_path, extra={"ENVHUB_BROWSER": "all"})
    pool.start()
    yield pool
    pool.stop_all()
    kill_environments(LocalRuntime(settings.envs_dir))


def test_create_wait_use_and_delete_an_environment_over_mcp(
    serve: Serve, people: People, project: Project, workers: Workers
) -> None:
    agent = Agent(serve(), people.token(people.world.member, ("read", "write", "shell", "admin")))
    created = agent.call("create_environment", project_id=project.id, name="mcp-1", command=COMMAND)[
        "environment"
    ]
    assert (created["phase"], created["trigger"]) == ("pending", "agent")
    env_id = created["id"]

    waited = agent.call("wait_until_ready", environment_id=env_id, timeout_seconds=120)
    assert waited["reached"], f"{waited}\n{workers.log_tail()}"
    assert (waited["settled"], waited["environment"]["phase"]) == (True, "ready")
    assert agent.call("get_public_url", environment_id=env_id) == {
        "url": "http://mcp-1.shop.acme.localhost:3000/",
        "serving": True,
        "phase": "ready",
        "ports": [],
    }

    ran = agent.call(
        "run_command", environment_id=env_id, command=["sh", "-c", "cat index.html; echo oops >&2; exit 3"]
    )
    assert (ran["exit_code"], ran["timed_out"], ran["truncated"]) == (3, False, False)
    assert ran["output"].splitlines() == ["hello from mcp", "oops"]
    assert ran["output_bytes"] == len(ran["output"])

    capped = agent.call("run_command", environment_id=env_id, command=["yes"], max_output_bytes=1000)
    assert (capped["truncated"], capped["output_bytes"], len(capped["output"])) == (True, 1000, 1000)
    slow = agent.call("run_command", environment_id=env_id, command=["sleep", "30"], timeout_seconds=1)
    assert (slow["timed_out"], slow["exit_code"]) == (True, None)

    logs = agent.call("get_logs", environment_id=env_id, tail=100)
    assert "started-by-mcp" in logs["lines"], logs
    events = agent.call("get_events", environment_id=env_id, limit=50)
    actions = [event["action"] for event in events["events"]]
    assert {"environment.create", "environment.exec"} <= set(actions)
    status = agent.call("get_environment", environment_id=env_id)
    assert status["run"]["status"] == "succeeded"
    assert status["permissions"]["can_delete"]

    assert agent.call("delete_environment", environment_id=env_id)["environment"]["phase"] == "deleting"
    deleted = agent.call("wait_until_ready", environment_id=env_id, phase="deleted", timeout_seconds=120)
    assert deleted["reached"], f"{deleted}\n{workers.log_tail()}"
    gone = agent.error("run_command", environment_id=env_id, command=["true"])
    assert gone["code"] == "invalid_transition"


APP = (
    "mkdir -p site && echo '<h1 id=\"greeting\">before</h1>' > site/index.html"
    " && exec python3 -m http.server $PORT --directory site"
)
SHOT = """\
import os
from playwright.sync_api import sync_playwright

with sync_playwright() as playwright:
    browser = playwright.chromium.launch(
        executable_path=os.environ["PLAYWRIGHT_CHROMIUM_EXECUTABLE_PATH"],
        args=os.environ["ENVHUB_CHROMIUM_ARGS"].split(),
    )
    page = browser.new_page(viewport={"width": 640, "height": 360})
    page.goto(os.environ["ENVHUB_PUBLIC_URL"])
    print("url", page.url)
    print("text", page.text_content("#greeting"))
    page.screenshot(path="shot.png")
    browser.close()
"""


def _png_pixels(data: bytes) -> tuple[int, int, bytes]:
    """(width, height, filtered scanlines) of a PNG; fails on anything that does not decode."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, chunks = 8, {}
    idat = b""
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind, body = data[position + 4 : position + 8], data[position + 8 : position + 8 + length]
        (crc,) = struct.unpack(">I", data[position + 8 + length : position + 12 + length])
        assert zlib.crc32(kind + body) == crc, kind
        if kind == b"IDAT":
            idat += body
        chunks.setdefault(kind, body)
        position += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert b"IEND" in chunks
    assert (depth, colour in (2, 6)) == (8, True)  # RGB or RGBA, 8 bits a sample
    pixels = zlib.decompress(idat)
    assert len(pixels) == height * (1 + width * (3 if colour == 2 else 4))
    return width, height, pixels


def test_an_agent_tests_its_environment_url_with_playwright_inside_it_over_mcp(
    serve: Serve, people: People, project: Project, workers: Workers
) -> None:
    require("chromium")
    base = serve()
    creator = Agent(base, people.token(people.world.member, ("read", "write", "shell")))
    created = creator.call("create_environment", project_id=project.id, name="pw-1", command=APP)
    env_id = created["environment"]["id"]
    waited = creator.call("wait_until_ready", environment_id=env_id, timeout_seconds=120)
    assert waited["reached"], f"{waited}\n{workers.log_tail()}"
    # From here on the agent works with the agent token it was given for this environment.
    agent = Agent(base, agent_token(people.session, people.world.member, env_id))
    url = agent.call("get_public_url", environment_id=env_id)["url"]
    assert url == "http://pw-1.shop.acme.localhost:3000/"

    page = agent.call("read_file", environment_id=env_id, path="site/index.html")["content"]
    changed = page.replace("before", "changed by the agent")
    agent.call("write_file", environment_id=env_id, path="site/index.html", content=changed)
    agent.call("write_file", environment_id=env_id, path="shot.py", content=SHOT)
    ran = agent.call(
        "run_command",
        environment_id=env_id,
        command=["sh", "-c", 'PYTHONPATH="$ENVHUB_PLAYWRIGHT_PYTHONPATH" exec python3 shot.py'],
        timeout_seconds=120,
    )
    assert (ran["exit_code"], ran["timed_out"]) == (0, False), ran["output"]
    assert ran["output"].splitlines()[-2:] == [f"url {url}", "text changed by the agent"]

    shot = agent.call("read_file", environment_id=env_id, path="shot.png")
    assert shot["encoding"] == "base64"
    png = base64.b64decode(shot["content"])
    width, height, pixels = _png_pixels(png)
    assert (width, height) == (640, 360)
    assert len(set(pixels)) > 2, "a blank screenshot: the heading was not drawn"
