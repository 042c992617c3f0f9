"""``envhub backups ls|create|restore``: backups of an environment's managed PostgreSQL databases.

A deployment environment's databases are backed up on a schedule; anyone who
may redeploy an environment can back its database up now or restore a backup
(a deployment environment's takes a team owner and ``--confirm NAME``). What
a restore replaces is backed up first. ``--wait`` follows the job to its end.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from envhub.cli import resources
from envhub.cli.client import Connection
from envhub.cli.errors import INVALID, CliError
from envhub.cli.output import Format, OutputOption, ServerOption, command, console, print_json, rows_table
from envhub.cli.resources import EnvArgument

app = typer.Typer(name="backups", help="Backups of an environment's managed databases.", no_args_is_help=True)

WaitOption = Annotated[bool, typer.Option("--wait", help="Follow the job until it has finished.")]
_DONE = {"succeeded", "failed", "expired"}
_POLL_SECONDS = 1.0
_WAIT_LIMIT = 3600.0


def _backups_path(environment_id: int) -> str:
    return f"/api/v1/environments/{environment_id}/backups"


def _show(view: dict[str, Any], output: Format) -> None:
    if output is Format.json:
        print_json(view)
        return
    for status in view["status"]:
        last = (
            f"last backup {status['last_success']} ({status['last_size']})"
            if status["last_success"]
            else "no backup yet"
        )
        console.print(f"[bold]{status['service']}[/]: {last}; {status['schedule']}")
        if status["warning"]:
            console.print(f"  [yellow]! {status['warning']}[/]")
    if not view["backups"]:
        console.print("No backups (envhub backups create ENV SERVICE takes one).")
        return
    console.print(
        rows_table(
            ("ID", "SERVICE", "TAKEN", "TRIGGER", "STATE", "SIZE", "DURATION", "CHECK", "SHA-256"),
            [
                (
                    row["id"],
                    row["service"],
                    row["created"],
                    row["trigger_label"],
                    row["state"] + (f": {row['error']}" if row["error"] else ""),
                    row["size"] or "-",
                    row["duration"] or "-",
                    row["check"] or "-",
                    row["sha256"][:12] or ("barman" if row["method"] == "barman" else "-"),
                )
                for row in view["backups"]
            ],
        )
    )
    if view["next_before"]:
        console.print(f"Older backups: --before {view['next_before']}")


@app.command("ls")
@command
def list_backups(
    env: EnvArgument,
    service: Annotated[str | None, typer.Option(help="Only this database.")] = None,
    before: Annotated[int | None, typer.Option(help="Backups older than this id (the next page).")] = None,
    server: ServerOption = None,
    output: OutputOption = Format.text,
) -> None:
    """An environment's backups, newest first, with when the last one succeeded."""
    connection = Connection.signed_in(server)
    params: dict[str, Any] = {
        key: value for key, value in {"service": service, "before": before}.items() if value
    }
    path = _backups_path(resources.environment_id(connection, env))
    _show(connection.request("GET", path, params=params), output)


def _follow(connection: Connection, environment_id: int, kind: str, row_id: int) -> dict[str, Any]:
    """Poll the environment's backups until the backup or restore ``row_id`` has finished."""
    deadline = time.monotonic() + _WAIT_LIMIT
    with console.status(f"Waiting for {kind} {row_id}...") as status:
        while True:
            view = connection.request("GET", _backups_path(environment_id), params={"limit": 200})
            rows = view["backups"] if kind == "backup" else view["restores"]
            row: dict[str, Any] | None = next((item for item in rows if item["id"] == row_id), None)
            if row is None:
                raise CliError("not_found", f"{kind} {row_id} is no longer listed for this environment")
            if row["state"] in _DONE:
                return row
            status.update(f"{kind.capitalize()} {row_id} is {row['state']}...")
            if time.monotonic() > deadline:
                raise CliError(
                    "timeout", f"{kind} {row_id} has not finished after an hour; envhub backups ls shows it"
                )
            time.sleep(_POLL_SECONDS)


def _finished(kind: str, row: dict[str, Any], output: Format) -> None:
    if output is Format.json:
        print_json(row)
    elif row["state"] == "succeeded":
        summary = f"{row['size']} in {row['duration']}" if kind == "backup" else row["detail"]
        console.print(f"{kind.capitalize()} {row['id']} succeeded: {summary}")
    if row["state"] != "succeeded":
        raise CliError(
            row["error_code"] or "failed", f"{kind} {row['id']} failed: {row['error'] or row['state']}"
        )


@app.command("create")
@command
def create(
    env: EnvArgument,
    service: Annotated[str, typer.Argument(help="The PostgreSQL service's name in the project.")],
    wait: WaitOption = False,
    server: ServerOption = None,
    output: OutputOption = Format.text,
) -> None:
    """Back a database up now."""
    connection = Connection.signed_in(server)
    environment_id = resources.environment_id(connection, env)
    row = connection.request("POST", f"/api/v1/environments/{environment_id}/services/{service}/backups")
    if wait:
        _finished("backup", _follow(connection, environment_id, "backup", row["id"]), output)
    elif output is Format.json:
        print_json(row)
    else:
        console.print(
            f"Backup {row['id']} of [bold]{service}[/] is {row['state']} (envhub backups ls {env})."
        )


@app.command("restore")
@command
def restore(
    backup_id: Annotated[int, typer.Argument(help="The backup's id (see `backups ls`).", min=1)],
    into: Annotated[
        str | None,
        typer.Option("--into", help="Restore into this environment of the project (default: its own)."),
    ] = None,
    service: Annotated[str | None, typer.Option(help="Into this database (default: the same name).")] = None,
    confirm: Annotated[
        str | None, typer.Option(help="A deployment environment's name: replacing its database takes it.")
    ] = None,
    new: Annotated[
        str | None,
        typer.Option("--new", help="Make a new development environment of this name with the backup's data."),
    ] = None,
    wait: WaitOption = False,
    server: ServerOption = None,
    output: OutputOption = Format.text,
) -> None:
    """Replace a database with a backup (what it held is backed up first), or start a new environment."""
    connection = Connection.signed_in(server)
    body: dict[str, Any] = {"service": service, "confirm": confirm, "new_environment": new}
    if into and new:
        raise CliError("validation_failed", "--into and --new name two places; give one", exit_code=INVALID)
    if into:
        body["environment_id"] = resources.environment_id(connection, into)
    row = connection.request(
        "POST", f"/api/v1/backups/{backup_id}/restore", json={k: v for k, v in body.items() if v is not None}
    )
    if wait:
        _finished("restore", _follow(connection, row["environment_id"], "restore", row["id"]), output)
    elif output is Format.json:
        print_json(row)
    else:
        console.print(f"Restore {row['id']} of backup {backup_id} is {row['state']}.")


def register(root: typer.Typer) -> None:
    root.add_typer(app)
