"""``envhub services ls|rotate``: an environment's managed services (``/api/v1/environments/{id}/services``).

A project declares them (``envhub projects update --service db=postgres:16``);
each environment gets its own instance, and its workloads receive the
connection details as variables. The CLI shows their names, never values.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from envhub.cli import resources
from envhub.cli.client import Connection
from envhub.cli.output import Format, OutputOption, ServerOption, command, console, print_json, rows_table
from envhub.cli.resources import EnvArgument

app = typer.Typer(
    name="services", help="An environment's managed databases, caches and buckets.", no_args_is_help=True
)


def _services_path(connection: Connection, env: str) -> str:
    return f"/api/v1/environments/{resources.environment_id(connection, env)}/services"


def _show(rows: list[dict[str, Any]], output: Format) -> None:
    if output is Format.json:
        print_json(rows)
        return
    if not rows:
        console.print(
            "The project declares no managed services (envhub projects update --service NAME=KIND)."
        )
        return
    console.print(
        rows_table(
            ("NAME", "KIND", "STATE", "BACKEND", "VARIABLES", "CREDENTIAL SET"),
            [
                (
                    row["name"],
                    row["kind_label"],
                    row["state_label"] + (f": {row['reason']}" if row["reason"] else ""),
                    row["backend"] or "-",
                    ", ".join(row["variables"]),
                    row["credential_set"] or "-",
                )
                for row in rows
            ],
        )
    )


@app.command("ls")
@command
def list_services(env: EnvArgument, server: ServerOption = None, output: OutputOption = Format.text) -> None:
    """The services an environment has: state, backend and the variables its workloads receive."""
    connection = Connection.signed_in(server)
    _show(connection.request("GET", _services_path(connection, env)), output)


@app.command("rotate")
@command
def rotate(
    env: EnvArgument,
    service: Annotated[str, typer.Argument(help="The service's name in the project (see `services ls`).")],
    server: ServerOption = None,
    output: OutputOption = Format.text,
) -> None:
    """Replace a service's credential; the environment redeploys with the new one."""
    connection = Connection.signed_in(server)
    environment_id = resources.environment_id(connection, env)
    rows = connection.request("POST", f"/api/v1/environments/{environment_id}/services/{service}/rotate")
    if output is not Format.json:
        console.print(f"Rotating [bold]{service}[/]'s credential; the environment is redeploying.")
    _show(rows, output)


@app.command("catalog")
@command
def catalog(server: ServerOption = None, output: OutputOption = Format.text) -> None:
    """What the operator's catalog offers: declare one with --service NAME=catalog:ENTRY[:KEY=VALUE,...]."""
    connection = Connection.signed_in(server)
    entries = connection.request("GET", "/api/v1/catalog")
    if output is Format.json:
        print_json(entries)
        return
    if not entries:
        console.print("This envhub's operator offers no catalog (ENVHUB_SERVICES_CATALOG).")
        return
    console.print(
        rows_table(
            ("ENTRY", "TITLE", "PARAMETERS", "VARIABLES"),
            [
                (
                    entry["name"],
                    entry["title"],
                    ", ".join(f"{p['name']}={p['default']}" for p in entry["parameters"]) or "-",
                    ", ".join(entry["variables"]),
                )
                for entry in entries
            ],
        )
    )


def register(root: typer.Typer) -> None:
    root.add_typer(app)
