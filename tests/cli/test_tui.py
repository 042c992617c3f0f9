"""``envhub tui`` against a running envhub: the live list, create, delete, errors, and the shell hand-off.

The app is driven in-process with Textual's pilot (keys pressed, widgets
read); the shell hand-off runs the real command on a pseudo-terminal, since
it gives the real terminal to ``envhub shell`` and takes it back.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pexpect
from sqlmodel import Session, select
from textual.pilot import Pilot
from textual.widgets import DataTable, Label, RichLog

from envhub.cli.client import Connection
from envhub.cli.tui_app import EnvhubTui
from envhub.models import Environment
from tests.cli.conftest import Cli
from tests.support.loops import run_in_fresh_loop
from tests.support.world import World
from tests.terminal.harness import People, Serve

ALL_SCOPES = ("read", "write", "shell", "admin")


async def until(pilot: Pilot[None], check: Callable[[], object], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.1)


def names(app: EnvhubTui) -> list[str]:
    return [f"{row['project']}/{row['name']}" for row in app.rows]


def message(app: EnvhubTui) -> str:
    return str(app.query_one("#message", Label).render())


def test_the_tui_lists_creates_and_deletes_environments_live(
    serve: Serve, people: People, session: Session, world: World, environment: Environment
) -> None:
    token = people.token(world.owner, ALL_SCOPES).headers["Authorization"][7:]
    app = EnvhubTui(Connection(serve(), token), refresh_every=0.5)

    async def drive() -> None:
        async with app.run_test(size=(160, 40)) as pilot:
            await until(pilot, lambda: names(app) == ["shop/dev"], "the environment to be listed")
            table = app.query_one(DataTable)
            assert table.get_row_at(0)[1:4] == ["shop", "dev", "pending"]
            await until(pilot, lambda: app.query_one(RichLog).lines, "the selected one's logs")

            await pilot.press("n", *"shop/from-tui", "enter")
            await until(pilot, lambda: "shop/from-tui" in names(app), "the new environment")
            assert "Creating shop/from-tui" in message(app)

            await pilot.press("n", *"nope/x", "enter")
            await until(pilot, lambda: "not_found" in message(app), "the error")
            assert "(not_found)" in message(app)

            row = names(app).index("shop/from-tui")
            table.move_cursor(row=row)
            await pilot.press("d", "n", "enter")
            await until(pilot, lambda: "Not deleted" in message(app), "the refusal")
            table.move_cursor(row=names(app).index("shop/from-tui"))
            await pilot.press("d", "y", "enter")
            await until(pilot, lambda: "Deleting shop/from-tui" in message(app), "the delete")

    run_in_fresh_loop(drive(), timeout=240)
    session.expire_all()
    states = {e.name: e.desired_state for e in session.exec(select(Environment)).all()}
    assert states == {"dev": "present", "from-tui": "absent"}


def test_the_tui_hands_the_terminal_to_a_shell_and_takes_it_back(
    cli: Cli, serve: Serve, people: People, world: World, environment: Environment
) -> None:
    token = people.token(world.owner, ("read", "shell")).headers["Authorization"][7:]
    env = cli.environ(ENVHUB_SERVER=serve(), ENVHUB_TOKEN=token)
    screen = pexpect.spawn(
        str(cli.path), ["tui"], env=env, dimensions=(30, 120), timeout=60, encoding="utf-8"
    )
    try:
        screen.expect_exact("pending")  # shop/dev is listed
        screen.send("s")
        screen.expect(r"[#$] $")  # the remote shell's prompt, on the real terminal
        screen.sendline("echo in-the-sh''ell; exit 3")
        screen.expect_exact("in-the-shell")
        screen.expect_exact("ended with status 3")  # back in the TUI, which says how it ended
        screen.send("q")
        screen.expect(pexpect.EOF)
    finally:
        screen.close(force=True)
    assert screen.exitstatus == 0
