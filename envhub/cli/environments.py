"""``envhub env ...``: list, create, watch, redeploy, delete and open environments (logs: env_inside.py).

Everything goes through REST API v1. Creating, redeploying and deleting
answer at once (``202``, a job does the work); ``--wait`` (or ``env wait``)
then follows the job's steps until the environment reaches the phase asked
for, fails, or the timeout passes. ENV is an id or ``project/name``.
"""

from __future__ import annotations

import sys
import time
import uuid
import webbrowser
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from envhub.cli import resources
from envhub.cli.auth import can_open_browser
from envhub.cli.client import Connection
from envhub.cli.errors import CONFLICT, TIMED_OUT, UNAVAILABLE, USAGE, CliError
from envhub.cli.output import (
    Format,
    OutputOption,
    ServerOption,
    command,
    console,
    err,
    fields_table,
    print_json,
    rows_table,
)
from envhub.cli.projects import parse_pairs
from envhub.cli.resources import EnvArgument
from envhub.domain.phases import Phase
from envhub.domain.specs import EnvironmentKind, Trigger

app = typer.Typer(name="env", help="List, create, watch and delete environments.", no_args_is_help=True)

TimeoutOption = Annotated[float, typer.Option("--timeout", min=1, help="Seconds to wait at most.")]
WaitOption = Annotated[
    bool, typer.Option("--wait", "-w", help="Wait until the job is done, showing its steps.")
]

# The keys of an environment in `env ls --output json`, the same with or without --project.
ROW_KEYS = ("id", "name", "project", "team", "phase", "kind", "trigger", "url", "creator", "created_at")
CREATE_ATTEMPTS = 3  # a create that could not be answered is sent again with the same Idempotency-Key
FOLLOW_SECONDS = 300  # the longest one follow request streams (the API's bound)
FINISHED = frozenset({"done", "failed", "skipped"})
STEP_MARKS = {"done": "[green]✓[/]", "failed": "[red]✗[/]", "skipped": "[dim]-[/]", "pending": "[dim]·[/]"}


def _path(environment_id: int, what: str = "") -> str:
    return f"/api/v1/environments/{environment_id}" + (f"/{what}" if what else "")


# --- waiting, with the job's steps on screen -------------------------------------------


def _steps_view(status: dict[str, Any]) -> Group:
    detail = status["detail"]
    title = Text.from_markup(f"[bold]{detail['name']}[/] is [bold]{detail['phase']}[/]")
    if detail.get("message"):
        title.append(f": {detail['message']}", style="dim")
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(width=2)
    table.add_column()
    table.add_column(style="dim")
    for step in status["steps"]:
        mark: Any = (
            Spinner("dots")
            if step["status"] == "running"
            else Text.from_markup(STEP_MARKS.get(step["status"], "·"))
        )
        # Literal text: a step's detail may quote a lifecycle command's output.
        line = Text(step["title"] + (f" ({step['detail']})" if step["detail"] else ""))
        table.add_row(mark, line, step["timing"])
    finished = sum(step["status"] in FINISHED for step in status["steps"])
    total = len(status["steps"])
    bar = Table.grid(padding=(0, 1))
    bar.add_row(ProgressBar(total=max(total, 1), completed=finished, width=40), f"{finished}/{total} steps")
    return Group(title, table, bar)


class Watcher:
    """Shows the steps as they change: a live table on a terminal, one line per change otherwise."""

    def __init__(self, fmt: Format) -> None:
        self.out = console if fmt is Format.text else err
        self.live: Live | None = None
        if self.out.is_terminal:
            self.live = Live(console=self.out, refresh_per_second=8, transient=False)
        self.seen: dict[str, str] = {}
        self.phase = ""

    def __enter__(self) -> Watcher:
        if self.live is not None:
            self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.stop()

    def show(self, status: dict[str, Any]) -> None:
        if self.live is not None:
            self.live.update(_steps_view(status))
            return
        detail = status["detail"]
        if detail["phase"] != self.phase:
            self.phase = detail["phase"]
            message = f": {detail['message']}" if detail.get("message") else ""
            self.out.print(f"{detail['name']} is {self.phase}{message}", soft_wrap=True)
        for step in status["steps"]:
            key = f"{step['key']}:{step['title']}"
            if self.seen.get(key) != step["status"]:
                self.seen[key] = step["status"]
                timing = f" ({step['timing']})" if step["timing"] else ""
                self.out.print(f"  {step['status']:<8} {step['title']}{timing}", soft_wrap=True)


def _failure(detail: dict[str, Any], target: str) -> CliError:
    if detail["phase"] == Phase.failed:
        return CliError(
            detail.get("error_code") or "environment_failed",
            f"{detail['name']} failed: {detail.get('message') or 'no reason was recorded'}",
            hint=detail.get("advice") or f"See `envhub env logs {detail['id']}`, then `envhub env redeploy`.",
        )
    return CliError(
        "invalid_transition",
        f"{detail['name']} settled in {detail['phase']}, not {target}",
        hint=f"See `envhub env status {detail['id']}`.",
        exit_code=CONFLICT,
    )


def wait_for(
    connection: Connection, environment_id: int, target: str, timeout: float, fmt: Format
) -> dict[str, Any]:
    """Follow the environment until it is in ``target``; its last status.

    Raises when it fails, settles elsewhere, or ``timeout`` passes.
    """
    deadline = time.monotonic() + timeout
    with Watcher(fmt) as watcher:
        while True:
            status: dict[str, Any] = connection.request("GET", _path(environment_id, "status"))
            watcher.show(status)
            detail = status["detail"]
            if detail["phase"] == target:
                return status
            if detail["phase"] == Phase.failed:
                raise _failure(detail, target)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CliError(
                    "wait_timed_out",
                    f"{detail['name']} was still {detail['phase']} after {timeout:g} s",
                    hint=f"Keep watching with `envhub env wait {environment_id}`.",
                    exit_code=TIMED_OUT,
                )
            # Held by the server until the phase settles or a second passes (then the steps are redrawn).
            waited = connection.request(
                "GET", _path(environment_id, "wait"), params={"phase": target, "timeout": min(1.0, remaining)}
            )
            if waited["settled"] and not waited["reached"]:
                watcher.show(connection.request("GET", _path(environment_id, "status")))
                raise _failure(waited["environment"], target)


def _finish(
    connection: Connection,
    started: dict[str, Any],
    target: str,
    wait: bool,
    timeout: float,
    fmt: Format,
    verb: str,
) -> None:
    """Print what a 202 answer started; with ``wait``, follow it to ``target`` first."""
    detail = started["environment"]
    if wait:
        detail = wait_for(connection, detail["id"], target, timeout, fmt)["detail"]
    if fmt is Format.json:
        print_json({**started, "environment": detail})
        return
    if wait:
        where = f" at {detail['url']}" if detail.get("url") else ""
        console.print(f"[bold]{detail['name']}[/] (id {detail['id']}) is {detail['phase']}{where}.")
    else:
        console.print(
            f"{verb} [bold]{detail['name']}[/] (id {detail['id']}, job {started.get('job_id')}). "
            f"Follow it with `envhub env wait {detail['id']}`."
        )


# --- commands --------------------------------------------------------------------------


def _row(item: dict[str, Any], project: dict[str, Any] | None) -> dict[str, Any]:
    row = {key: item.get(key) for key in ROW_KEYS}
    if project is not None:
        row["project"], row["team"] = project["name"], project["team"]
    return row


@app.command("ls")
@command
def list_environments(
    project: Annotated[
        str | None, typer.Option("--project", "-p", help="Only this project (name or id).")
    ] = None,
    team: Annotated[str | None, typer.Option("--team", help="Only this team's (name).")] = None,
    phase: Annotated[Phase | None, typer.Option("--phase", help="Only this phase.")] = None,
    kind: Annotated[EnvironmentKind | None, typer.Option("--kind", help="Only this kind.")] = None,
    trigger: Annotated[Trigger | None, typer.Option("--trigger", help="Only what this made.")] = None,
    creator: Annotated[str | None, typer.Option("--creator", help="Only this person's.")] = None,
    search: Annotated[str, typer.Option("--search", "-s", help="Part of the name.")] = "",
    limit: Annotated[
        int | None, typer.Option("--limit", "-L", min=1, help="At most this many (default: all).")
    ] = None,
    server: ServerOption = None,
    output: OutputOption = Format.text,
) -> None:
    """List environments: one project's (--project) or all you can see, newest first."""
    connection = Connection.signed_in(server)
    filters: dict[str, Any] = {"phase": phase, "kind": kind, "trigger": trigger}
    if project is None:
        found = resources.pages(
            connection,
            "/api/v1/environments",
            {**filters, "team": team, "creator": creator, "q": search},
            limit,
        )
        rows = [_row(item, None) for item in found]
    else:
        owner = resources.project(connection, project)
        path = f"/api/v1/projects/{owner['id']}/environments"
        # The project's list has no team or creator filter: those are applied here, then the limit.
        local = team is not None or creator is not None
        found = resources.pages(connection, path, {**filters, "search": search}, None if local else limit)
        rows = [
            _row(item, owner)
            for item in found
            if team in (None, owner["team"]) and creator in (None, item.get("creator"))
        ][:limit]
    if output is Format.json:
        print_json(rows)
        return
    if not rows:
        console.print("No environments.")
        return
    console.print(
        rows_table(
            ("ID", "NAME", "PROJECT", "PHASE", "KIND", "TRIGGER", "URL", "CREATOR", "CREATED"),
            [
                (
                    r["id"],
                    r["name"],
                    r["project"],
                    r["phase"],
                    r["kind"],
                    r["trigger"],
                    r["url"],
                    r["creator"],
                    r["created_at"],
                )
                for r in rows
            ],
        )
    )


@app.command("create")
@command
def create_environment(
    project: Annotated[str, typer.Argument(help="The project (name or id).")],
    name: Annotated[
        str | None, typer.Argument(help="The environment's name (generated when left out).")
    ] = None,
    ref: Annotated[str | None, typer.Option("--ref", help="Git ref to check out.")] = None,
    run: Annotated[str | None, typer.Option("--command", help="The command that serves it.")] = None,
    kind: Annotated[
        EnvironmentKind, typer.Option("--kind", help="What it is for.")
    ] = EnvironmentKind.development,
    env: Annotated[
        list[str] | None, typer.Option("--env", "-e", help="Variable KEY=VALUE (repeatable).")
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            "--idempotency-key",
            help="Send the same key again to get the first answer, not a second environment "
            "(default: a new key per command).",
        ),
    ] = None,
    wait: WaitOption = False,
    timeout: TimeoutOption = 600.0,
    server: ServerOption = None,
    output: OutputOption = Format.text,
) -> None:
    """Create an environment in a project (a job provisions it; --wait to watch)."""
    connection = Connection.signed_in(server)
    owner = resources.project(connection, project)
    body: dict[str, Any] = {"kind": kind.value, "env": parse_pairs(env, "--env")}
    for key, value in (("name", name), ("ref", ref), ("command", run)):
        if value is not None:
            body[key] = value
    key = idempotency_key or str(uuid.uuid4())
    path = f"/api/v1/projects/{owner['id']}/environments"
    for attempt in range(1, CREATE_ATTEMPTS + 1):
        try:
            started = connection.request("POST", path, json=body, headers={"Idempotency-Key": key})
            break
        except CliError as exc:
            if exc.exit_code != UNAVAILABLE or attempt == CREATE_ATTEMPTS:
                raise
            time.sleep(attempt)
    _finish(connection, started, Phase.ready, wait, timeout, output, "Creating")


@app.command("status")
@command
def status(env: EnvArgument, server: ServerOption = None, output: OutputOption = Format.text) -> None:
    """An environment's phase, URL, latest job with its steps, and what you may do."""
    connection = Connection.signed_in(server)
    answer = connection.request("GET", _path(resources.environment_id(connection, env), "status"))
    if output is Format.json:
        print_json(answer)
        return
    detail, run = answer["detail"], answer["run"]
    rows: list[tuple[str | Text, Any]] = [
        ("id", detail["id"]),
        ("name", detail["name"]),
        ("phase", detail["phase"] + (f": {detail['message']}" if detail["message"] else "")),
        ("url", detail["url"] or "-"),
        ("kind", detail["kind"]),
        ("trigger", detail["trigger"]),
        ("ref", detail["ref"] or "-"),
        ("created", detail["created"]),
    ]
    if detail["error_code"]:
        rows.append(("error", f"{detail['error_code']}: {detail['advice']}"))
    if run["kind"]:
        rows.append(("job", f"{run['kind']} {run['status']} {run['took']}".strip()))
    if detail.get("devcontainer"):
        # Keys and labels are the repository's text: shown literally, never as markup.
        rows.append(("devcontainer", Text(detail["devcontainer"])))
        for port in detail.get("devcontainer_ports", []):
            label = f" ({port['label']})" if port["label"] else ""
            rows.append((Text(f"port {port['port']}{label}"), Text(port["url"] or "no public URL")))
        for entry in detail.get("devcontainer_unsupported", []):
            rows.append((Text(f"not honoured: {entry['key']}"), Text(entry["reason"])))
    console.print(fields_table(rows))
    if answer["steps"]:
        console.print(_steps_view(answer).renderables[1])


@app.command("wait")
@command
def wait_command(
    env: EnvArgument,
    phase: Annotated[Phase, typer.Option("--for", help="The phase to wait for.")] = Phase.ready,
    timeout: TimeoutOption = 600.0,
    server: ServerOption = None,
    output: OutputOption = Format.text,
) -> None:
    """Wait until the environment is ready (or --for PHASE), showing the job's steps."""
    connection = Connection.signed_in(server)
    environment_id = resources.environment_id(connection, env)
    final = wait_for(connection, environment_id, phase.value, timeout, output)
    detail = final["detail"]
    if output is Format.json:
        print_json(final)
    else:
        where = f" at {detail['url']}" if detail.get("url") else ""
        console.print(f"[bold]{detail['name']}[/] is {detail['phase']}{where}.")


@app.command("redeploy")
@command
def redeploy(
    env: EnvArgument,
    wait: WaitOption = False,
    timeout: TimeoutOption = 600.0,
    server: ServerOption = None,
    output: OutputOption = Format.text,
) -> None:
    """Redeploy an environment: check out, build and start it again."""
    connection = Connection.signed_in(server)
    started = connection.request("POST", _path(resources.environment_id(connection, env), "redeploy"))
    _finish(connection, started, Phase.ready, wait, timeout, output, "Redeploying")


@app.command("delete")
@command
def delete(
    env: EnvArgument,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    confirm: Annotated[
        str | None,
        typer.Option(
            "--confirm",
            metavar="NAME",
            help="The environment's name: a deployment environment (staging, production) is deleted "
            "only with it, by a team owner. It answers the question too.",
        ),
    ] = None,
    wait: WaitOption = False,
    timeout: TimeoutOption = 600.0,
    server: ServerOption = None,
    output: OutputOption = Format.text,
) -> None:
    """Delete an environment (asks first on a terminal; --yes otherwise).

    Deleting a deployment environment takes a team owner and --confirm with its name.
    """
    connection = Connection.signed_in(server)
    environment_id = resources.environment_id(connection, env)
    if not yes and confirm is None:
        if not sys.stdin.isatty():
            raise CliError(
                "confirmation_required",
                "deleting needs a confirmation and there is no terminal to ask on",
                hint="Pass --yes to delete without asking.",
                exit_code=USAGE,
            )
        detail = connection.request("GET", _path(environment_id))
        if not typer.confirm(f"Delete {detail['name']} (id {environment_id})?", err=True):
            raise typer.Exit(1)
    params = {"confirm": confirm} if confirm is not None else {}
    try:
        started = connection.request("DELETE", _path(environment_id), params=params)
    except CliError as exc:
        if exc.code != "validation_failed":
            raise
        name = connection.request("GET", _path(environment_id))["name"]
        raise CliError(
            exc.code,
            exc.message,
            hint=f"Pass --confirm {name} to delete it (a team owner only).",
            exit_code=exc.exit_code,
        ) from None
    _finish(connection, started, Phase.deleted, wait, timeout, output, "Deleting")


def _url(connection: Connection, env: str) -> str:
    detail = connection.request("GET", _path(resources.environment_id(connection, env)))
    if not detail["url"]:
        raise CliError(
            "not_ready",
            f"{detail['name']} has no public URL while it is {detail['phase']}",
            hint=f"Wait until it is ready: `envhub env wait {detail['id']}`.",
            http_status=503,
        )
    return str(detail["url"])


@app.command("url")
@command
def url(env: EnvArgument, server: ServerOption = None, output: OutputOption = Format.text) -> None:
    """Print the environment's public URL."""
    address = _url(Connection.signed_in(server), env)
    if output is Format.json:
        print_json({"url": address})
    else:
        sys.stdout.write(address + "\n")


@app.command("open")
@command
def open_command(env: EnvArgument, server: ServerOption = None, output: OutputOption = Format.text) -> None:
    """Open the environment's public URL in the browser (prints it when there is none)."""
    address = _url(Connection.signed_in(server), env)
    opened = can_open_browser() and webbrowser.open(address)
    if output is Format.json:
        print_json({"url": address, "opened": bool(opened)})
    elif opened:
        console.print(f"Opened {address}")
    else:
        sys.stdout.write(address + "\n")


def register(root: typer.Typer) -> None:
    root.add_typer(app)
