"""``envhub deployments show|configure``: a project's deployment environments, side by side.

``show`` puts the environments next to each other (what runs, what waits and
why, their rules, what each declares for itself), then how one artifact's
renderings differ between an environment and the one promoted from it.
``configure`` sends a whole settings document (YAML or JSON, from a file or
standard input), as ``PUT /api/v1/projects/{id}/deployments`` takes it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.table import Table

from envhub.cli import resources
from envhub.cli.client import Connection
from envhub.cli.errors import INVALID, CliError
from envhub.cli.output import Format, OutputOption, ServerOption, command, console, print_json
from envhub.cli.releases import diff_text, release_line

app = typer.Typer(
    name="deployments", help="Show and configure deployment environments.", no_args_is_help=True
)

ProjectArgument = Annotated[str, typer.Argument(metavar="PROJECT", help="The project (name or id).")]


def _deployments_path(project_id: int) -> str:
    return f"/api/v1/projects/{project_id}/deployments"


def _running(overview: dict[str, Any]) -> str:
    row = overview["running"]
    return f"{release_line(row)} (id {row['id']})" if row else "nothing yet"


def _waiting(overview: dict[str, Any]) -> str:
    row = overview["latest"]
    if not row:
        return "-"
    why = f"\n{row['message']}" if row["message"] else ""
    return f"{release_line(row)} (id {row['id']}){why}"


def _side_by_side(view: dict[str, Any]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold", show_lines=False)
    table.add_column("")
    for overview in view["environments"]:
        table.add_column(overview["name"], overflow="fold", ratio=1)
    fields = (
        ("phase", lambda o: o["phase"] + (f": {o['message']}" if o["message"] else "")),
        ("url", lambda o: o["url"] or "-"),
        ("takes from", lambda o: o["promote_from"] or "merges and CI"),
        ("running", _running),
        ("next", _waiting),
        ("rules", lambda o: o["rules"]),
        ("declares", lambda o: o["declares"] or "-"),
    )
    for label, value in fields:
        table.add_row(f"[bold]{label}[/]", *(value(o) for o in view["environments"]))
    return table


def print_view(view: dict[str, Any]) -> None:
    if not view["configured"]:
        console.print(
            f"{view['project']} has no deployment environments. "
            f"Configure them with `envhub deployments configure {view['project']} --file settings.yaml`."
        )
        return
    console.print(
        f"[bold]{view['project']}[/] deploys {view['source']} from {view['branches'] or 'no branch'} "
        f"(releases on {view['release_on']})."
    )
    if view["environments"]:
        console.print(_side_by_side(view))
    if view["compared"]:
        if view["differences"]:
            console.print(f"[bold]{view['compared']} differ in:[/]")
            console.print(diff_text(view["differences"]), soft_wrap=True)
        else:
            console.print(f"{view['compared']}: the same objects.")


def _read_settings(source: str) -> dict[str, Any]:
    """The settings document from a file or ``-`` (standard input): YAML, of which JSON is a part."""
    try:
        text = sys.stdin.read() if source == "-" else Path(source).expanduser().read_text()
    except OSError as exc:
        raise CliError(
            "validation_failed",
            f"cannot read {source}: {exc.strerror}",
            hint="Pass a readable YAML or JSON file to --file, or - to read standard input.",
            exit_code=INVALID,
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CliError(
            "validation_failed",
            f"{source} is neither YAML nor JSON: {exc}",
            hint="See the README's deployment section for the document's shape.",
            exit_code=INVALID,
        ) from None
    if not isinstance(data, dict):
        raise CliError(
            "validation_failed",
            f"{source} must hold one mapping (source, branches, environments, ...)",
            hint="See the README's deployment section for the document's shape.",
            exit_code=INVALID,
        )
    return data


@app.command("show")
@command
def show(project: ProjectArgument, server: ServerOption = None, output: OutputOption = Format.text) -> None:
    """The project's deployment environments side by side, and how they differ."""
    connection = Connection.signed_in(server)
    owner = resources.project(connection, project)
    view = connection.request("GET", _deployments_path(owner["id"]))
    if output is Format.json:
        print_json(view)
        return
    print_view(view)


@app.command("configure")
@command
def configure(
    project: ProjectArgument,
    file: Annotated[
        str, typer.Option("--file", "-f", help="The settings document, YAML or JSON (- for standard input).")
    ],
    server: ServerOption = None,
    output: OutputOption = Format.text,
) -> None:
    """Set the project's deployment settings (the whole document); creates the environments it names."""
    settings = _read_settings(file)
    connection = Connection.signed_in(server)
    owner = resources.project(connection, project)
    view = connection.request("PUT", _deployments_path(owner["id"]), json={"settings": settings})
    if output is Format.json:
        print_json(view)
        return
    names = ", ".join(o["name"] for o in view["environments"])
    console.print(f"Configured {view['project']}'s deployment environments: {names}.")
    print_view(view)


def register(root: typer.Typer) -> None:
    root.add_typer(app)
