"""``envhub proc start|ls|logs|stop``: background processes of an environment.

``start`` returns at once and the process keeps running (``api/v1/processes.py``);
``logs`` prints what it wrote (``--follow`` until it ends), ``stop`` ends it.
"""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any

import typer

from envhub.cli import resources
from envhub.cli.client import Connection
from envhub.cli.errors import INVALID, CliError
from envhub.cli.output import Format, OutputOption, ServerOption, command, console, print_json, rows_table
from envhub.cli.resources import EnvArgument

app = typer.Typer(name="proc", help="Background processes of an environment.", no_args_is_help=True)

ProcessArgument = Annotated[int, typer.Argument(help="The process's id (envhub proc ls).")]
_POLL_SECONDS = 1.0


def _processes_path(environment_id: int) -> str:
    return f"/api/v1/environments/{environment_id}/processes"


def _describe(row: dict[str, Any]) -> str:
    ended = f" (exit code {row['exit_code']})" if row["exit_code"] is not None else ""
    return f"{row['id']} {row['name']}: {row['state']}{ended}"


@app.command("start")
@command
def start(
    env: EnvArgument,
    name: Annotated[str, typer.Argument(help="A name for it, e.g. dev-server.")],
    argv: Annotated[
        list[str] | None, typer.Argument(help="The command and its arguments (after --).")
    ] = None,
    shell: Annotated[str | None, typer.Option("--shell", help="A command line for sh -c instead.")] = None,
    server: ServerOption = None,
    output: OutputOption = Format.text,
) -> None:
    """Start a process that keeps running in the environment."""
    if bool(argv) == bool(shell):
        raise CliError("usage", "give the command after -- or as --shell, not both", exit_code=INVALID)
    connection = Connection.signed_in(server)
    environment_id = resources.environment_id(connection, env)
    body: dict[str, Any] = {"name": name, **({"command": argv} if argv else {"shell": shell})}
    row = connection.request("POST", _processes_path(environment_id), json=body)
    if output is Format.json:
        print_json(row)
    else:
        console.print(f"Started {_describe(row)}")


@app.command("ls")
@command
def list_processes(env: EnvArgument, server: ServerOption = None, output: OutputOption = Format.text) -> None:
    """The environment's background processes, newest first."""
    connection = Connection.signed_in(server)
    listing = connection.request("GET", _processes_path(resources.environment_id(connection, env)))
    if output is Format.json:
        print_json(listing)
        return
    console.print(
        rows_table(
            ("ID", "NAME", "STATE", "EXIT", "STARTED", "BY", "COMMAND"),
            [
                (
                    row["id"],
                    row["name"],
                    row["state"],
                    "-" if row["exit_code"] is None else row["exit_code"],
                    row["started_at"],
                    row["started_by"],
                    row["command"],
                )
                for row in listing["processes"]
            ],
        )
    )


@app.command("logs")
@command
def logs(
    env: EnvArgument,
    process: ProcessArgument,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until it ends.")] = False,
    server: ServerOption = None,
) -> None:
    """Print what a background process wrote (stdout and stderr)."""
    connection = Connection.signed_in(server)
    path = f"/api/v1/environments/{resources.environment_id(connection, env)}/processes/{process}/output"
    offset = 0
    while True:
        answer = connection.request("GET", path, params={"offset": offset, "max_bytes": 1024 * 1024})
        if answer["offset"] > offset:
            skipped = answer["offset"] - offset
            sys.stderr.write(f"[envhub: {skipped} bytes of older output were dropped (output limit)]\n")
        sys.stdout.write(answer["output"])
        sys.stdout.flush()
        offset = answer["next_offset"]
        if offset < answer["size"]:
            continue
        if not follow or answer["state"] != "running":
            return
        time.sleep(_POLL_SECONDS)


@app.command("stop")
@command
def stop(
    env: EnvArgument,
    process: ProcessArgument,
    grace: Annotated[float, typer.Option(help="Seconds between SIGTERM and SIGKILL.", min=0, max=60)] = 5.0,
    server: ServerOption = None,
    output: OutputOption = Format.text,
) -> None:
    """Stop a background process (SIGTERM, then SIGKILL after --grace seconds)."""
    connection = Connection.signed_in(server)
    environment_id = resources.environment_id(connection, env)
    row = connection.request(
        "POST",
        f"/api/v1/environments/{environment_id}/processes/{process}/stop",
        json={"grace_seconds": grace},
    )
    if output is Format.json:
        print_json(row)
    else:
        console.print(_describe(row))


def register(parent: typer.Typer) -> None:
    parent.add_typer(app)
