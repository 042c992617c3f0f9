"""``envhub projects ls|create``: the projects you can see, and new ones (``/api/v1/projects``);
``envhub projects github ...``: a project's repository (cli/project_github.py)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from envhub.cli import project_github, resources
from envhub.cli.client import Connection
from envhub.cli.errors import INVALID, CliError
from envhub.cli.output import (
    Format,
    OutputOption,
    ServerOption,
    command,
    console,
    fields_table,
    print_json,
    rows_table,
)

app = typer.Typer(name="projects", help="List and create projects.", no_args_is_help=True)
app.add_typer(project_github.app)

# The keys of a project in `--output json`, whatever else the API adds later.
ROW_KEYS = ("id", "name", "team", "description", "repo", "environments", "created_at")


def parse_pairs(pairs: list[str] | None, option: str) -> dict[str, str]:
    """``KEY=VALUE`` arguments as a dict; a pair without ``=`` is an invalid request."""
    parsed: dict[str, str] = {}
    for pair in pairs or []:
        key, equals, value = pair.partition("=")
        if not equals or not key:
            raise CliError(
                "validation_failed",
                f"{option} {pair!r} is not KEY=VALUE",
                hint=f"Write it as {option} NAME=value.",
                exit_code=INVALID,
            )
        parsed[key] = value
    return parsed


@app.command("ls")
@command
def list_projects(
    search: Annotated[str, typer.Option("--search", "-s", help="Part of the project's name.")] = "",
    limit: Annotated[
        int | None, typer.Option("--limit", "-L", min=1, help="At most this many (default: all).")
    ] = None,
    server: ServerOption = None,
    output: OutputOption = Format.text,
) -> None:
    """List the projects you can see (every page, or --limit)."""
    connection = Connection.signed_in(server)
    rows = [
        {key: row.get(key) for key in ROW_KEYS}
        for row in resources.pages(connection, "/api/v1/projects", {"search": search}, limit)
    ]
    if output is Format.json:
        print_json(rows)
        return
    if not rows:
        console.print("No projects. Create one with `envhub projects create NAME --team TEAM`.")
        return
    console.print(
        rows_table(
            ("ID", "NAME", "TEAM", "ENVIRONMENTS", "REPO", "CREATED"),
            [(r["id"], r["name"], r["team"], r["environments"], r["repo"], r["created_at"]) for r in rows],
        )
    )


@app.command("create")
@command
def create_project(
    name: Annotated[str, typer.Argument(help="The project's name (lowercase letters, digits, dashes).")],
    team: Annotated[str, typer.Option("--team", "-t", help="The team (name or id) that owns it.")],
    repo: Annotated[str | None, typer.Option("--repo", help="Git repository URL to check out.")] = None,
    ref: Annotated[str | None, typer.Option("--ref", help="Default git ref.")] = None,
    run: Annotated[str | None, typer.Option("--command", help="The command that serves it.")] = None,
    description: Annotated[str, typer.Option("--description", help="One line about it.")] = "",
    health_path: Annotated[
        str | None, typer.Option("--health-path", help="Path that answers when up.")
    ] = None,
    env: Annotated[
        list[str] | None, typer.Option("--env", "-e", help="Default variable KEY=VALUE (repeatable).")
    ] = None,
    server: ServerOption = None,
    output: OutputOption = Format.text,
) -> None:
    """Create a project in a team."""
    connection = Connection.signed_in(server)
    body: dict[str, Any] = {"team_id": resources.team_id(connection, team), "name": name}
    body["description"] = description
    for key, value in (
        ("repo_url", repo),
        ("default_ref", ref),
        ("command", run),
        ("health_path", health_path),
    ):
        if value is not None:
            body[key] = value
    if env:
        body["env"] = parse_pairs(env, "--env")
    created = connection.request("POST", "/api/v1/projects", json=body)
    if output is Format.json:
        print_json(created)
        return
    console.print(f"Created project [bold]{created['name']}[/] (id {created['id']}) in {created['team']}.")
    console.print(
        fields_table([("repo", created["repo"]), ("ref", created["ref"]), ("command", created["command"])])
    )


def register(root: typer.Typer) -> None:
    root.add_typer(app)
