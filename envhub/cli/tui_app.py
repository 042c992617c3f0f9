"""The Textual app behind ``envhub tui`` (envhub/cli/tui.py says what it does): imported when it runs."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from typing import Any, ClassVar

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Header, Input, Label, RichLog

from envhub.cli import resources
from envhub.cli.client import Connection
from envhub.cli.errors import CliError
from envhub.cli.tui import REFRESH_SECONDS

COLUMNS = ("ID", "PROJECT", "NAME", "PHASE", "KIND", "TRIGGER", "URL", "CREATOR")
MAX_PROJECTS = 200  # one page of projects: the TUI is a window, `envhub env ls` is the full list


def visible_environments(connection: Connection) -> list[dict[str, Any]]:
    """Every live environment in the projects the caller can see, newest project first."""
    rows: list[dict[str, Any]] = []
    for project in resources.pages(connection, "/api/v1/projects", {}, MAX_PROJECTS):
        path = f"/api/v1/projects/{project['id']}/environments"
        for item in resources.pages(connection, path, {}):
            rows.append({**item, "project": project["name"]})
    return rows


class Ask(ModalScreen[str]):
    """One question, one line of answer (Escape cancels with "")."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    Ask { align: center middle; }
    Ask > Vertical { width: 70; height: auto; border: round $accent; padding: 1 2; background: $surface; }
    """

    def __init__(self, question: str, placeholder: str = "") -> None:
        super().__init__()
        self.question, self.placeholder = question, placeholder

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.question)
            yield Input(placeholder=self.placeholder, id="answer")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip())

    def action_cancel(self) -> None:
        self.dismiss("")


class EnvhubTui(App[None]):
    TITLE = "envhub"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "create", "New"),
        Binding("d", "delete", "Delete"),
        Binding("l", "logs", "Logs"),
        Binding("s", "shell", "Shell"),
        Binding("r", "refresh", "Refresh"),
        Binding("q", "quit", "Quit"),
    ]
    DEFAULT_CSS = """
    #environments { height: 2fr; }
    #logs { height: 1fr; border-top: solid $accent; }
    #message { height: 1; color: $warning; }
    """

    def __init__(self, connection: Connection, refresh_every: float = REFRESH_SECONDS) -> None:
        super().__init__()
        self.connection = connection
        self.refresh_every = refresh_every
        self.sub_title = connection.server
        self.rows: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(id="environments", cursor_type="row", zebra_stripes=True)
        yield Label("", id="message")
        yield RichLog(id="logs", max_lines=2000, wrap=False)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns(*COLUMNS)
        self.action_refresh()
        self.set_interval(self.refresh_every, self.action_refresh)

    # --- reading ---------------------------------------------------------------------

    def say(self, text: str) -> None:
        self.query_one("#message", Label).update(text)

    def fail(self, error: CliError) -> None:
        self.say(f"{error.message} ({error.code})" + (f": {error.hint}" if error.hint else ""))

    def selected(self) -> dict[str, Any] | None:
        table = self.query_one(DataTable)
        if not self.rows or table.cursor_row < 0 or table.cursor_row >= len(self.rows):
            return None
        return self.rows[table.cursor_row]

    @work(thread=True, exclusive=True, group="refresh")
    def action_refresh(self) -> None:
        try:
            rows = visible_environments(self.connection)
        except CliError as exc:
            self.call_from_thread(self.fail, exc)
            return
        self.call_from_thread(self.show, rows)

    def show(self, rows: list[dict[str, Any]]) -> None:
        table = self.query_one(DataTable)
        before = self.selected()
        self.rows = rows
        table.clear()
        for row in rows:
            table.add_row(
                str(row["id"]), row["project"], row["name"], row["phase"], row["kind"],
                row["trigger"], row["url"], row["creator"], key=str(row["id"]),
            )  # fmt: skip
        if before is not None:
            for index, row in enumerate(rows):
                if row["id"] == before["id"]:
                    table.move_cursor(row=index)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.action_logs()

    @work(thread=True, exclusive=True, group="logs")
    def action_logs(self) -> None:
        chosen = self.selected()
        if chosen is None:
            return
        try:
            answer = self.connection.request(
                "GET", f"/api/v1/environments/{chosen['id']}/logs", params={"tail": 200}
            )
        except CliError as exc:
            self.call_from_thread(self.fail, exc)
            return
        self.call_from_thread(self.show_logs, chosen, answer["lines"])

    def show_logs(self, chosen: dict[str, Any], lines: list[str]) -> None:
        log = self.query_one(RichLog)
        log.clear()
        log.write(f"--- {chosen['project']}/{chosen['name']} (last {len(lines)} lines)")
        for line in lines:
            log.write(line)

    # --- acting ----------------------------------------------------------------------

    def action_create(self) -> None:
        def answered(answer: str | None) -> None:
            self.create(answer)

        self.push_screen(Ask("New environment (project/name):", "shop/review"), answered)

    @work(thread=True)
    def create(self, answer: str | None) -> None:
        if not answer:
            return
        project_ref, _, name = answer.partition("/")
        try:
            owner = resources.project(self.connection, project_ref)
            body = {"name": name} if name else {}
            started = self.connection.request(
                "POST",
                f"/api/v1/projects/{owner['id']}/environments",
                json=body,
                headers={"Idempotency-Key": str(uuid.uuid4())},
            )
        except CliError as exc:
            self.call_from_thread(self.fail, exc)
            return
        made = started["environment"]
        self.call_from_thread(self.say, f"Creating {owner['name']}/{made['name']} (id {made['id']})")
        self.call_from_thread(self.action_refresh)

    def action_delete(self) -> None:
        chosen = self.selected()
        if chosen is None:
            return
        question = f"Delete {chosen['project']}/{chosen['name']} (id {chosen['id']})? Type y to confirm:"

        def answered(answer: str | None) -> None:
            self.delete(chosen, answer)

        self.push_screen(Ask(question), answered)

    @work(thread=True)
    def delete(self, chosen: dict[str, Any], answer: str | None) -> None:
        if (answer or "").lower() not in ("y", "yes"):
            self.call_from_thread(self.say, "Not deleted.")
            return
        try:
            self.connection.request("DELETE", f"/api/v1/environments/{chosen['id']}")
        except CliError as exc:
            self.call_from_thread(self.fail, exc)
            return
        self.call_from_thread(self.say, f"Deleting {chosen['project']}/{chosen['name']}")
        self.call_from_thread(self.action_refresh)

    def action_shell(self) -> None:
        """Give the terminal to the environment's shell; the TUI comes back when it ends."""
        chosen = self.selected()
        if chosen is None:
            return
        # Its own process: the shell needs the main thread's signals (resize) and
        # an event loop of its own, and this process runs Textual's.
        argv = [sys.executable, "-m", "envhub.cli", "shell", str(chosen["id"])]
        environ = {**os.environ, "ENVHUB_SERVER": self.connection.server}
        if self.connection.token:
            environ["ENVHUB_TOKEN"] = self.connection.token
        with self.suspend():
            status = subprocess.run(argv, env=environ, check=False).returncode
        self.say(f"The shell in {chosen['project']}/{chosen['name']} ended with status {status}.")
