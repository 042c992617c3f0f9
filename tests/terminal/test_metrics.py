"""A real shell through the terminal bridge moves the web's terminal figures on ``/metrics``.

The app runs in its own process (tests/terminal/harness.py), so its figures
start at zero and belong to this test alone.
"""

from __future__ import annotations

import pytest

from envhub.models import Environment
from tests.support.scrape import Scrape, scrape
from tests.support.waiting import wait_for
from tests.terminal.client import Term
from tests.terminal.harness import People, Serve

pytestmark = pytest.mark.timeout(120)


def test_an_open_shell_and_the_bytes_it_relays_are_counted(
    serve: Serve, people: People, environment: Environment
) -> None:
    base = serve()
    before = scrape(f"{base}/metrics")
    assert before.value("envhub_terminal_sessions_open") == 0
    assert before.value("envhub_terminal_bytes_total", direction="output") == 0

    term = Term(base, environment.id or 0, auth=people.me(base))
    term.wait_control("hello")
    command = "echo metrics-$((6*7))"
    term.run(command, "metrics-42")
    during = scrape(f"{base}/metrics")
    assert during.value("envhub_terminal_sessions_open") == 1
    typed = during.value("envhub_terminal_bytes_total", direction="input")
    assert typed == len(command) + 1  # the command and its Enter, as typed
    # The shell's prompt, the echo of what was typed and the answer.
    assert during.value("envhub_terminal_bytes_total", direction="output") >= len("metrics-42") + len(command)

    term.run("exit", "")
    term.wait_control("exit")

    def closed() -> Scrape | None:
        page = scrape(f"{base}/metrics")
        return page if page.value("envhub_terminal_sessions_open") == 0 else None

    ended = wait_for(closed, timeout=30, what="the session to be counted closed")
    assert ended.value("envhub_terminal_bytes_total", direction="input") == typed + len("exit") + 1
