"""``envhub projects ls|show|create|update``: the projects you can see, new ones and their
defaults (``/api/v1/projects``); ``envhub projects github ...``: a project's repository
(cli/project_github.py)."""

from __future__ import annotations

from enum import StrEnum
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

app = typer.Typer(name="projects", help="List, show, create and change projects.", no_args_is_help=True)
app.add_typer(project_github.app)

# The keys of a project in `--output json`, whatever else the API adds later.
ROW_KEYS = ("id", "name", "team", "description", "repo", "environments", "created_at")


class UrlAccessChoice(StrEnum):
    public = "public"
    sign_in = "sign-in"
    sign_in_api = "sign_in"  # the API's spelling, accepted too


UrlAccessOption = Annotated[
    UrlAccessChoice | None,
    typer.Option(
        "--url-access",
        help="Who can open environment URLs: public (anyone with the link) or sign-in "
        "(people signed in to envhub who can see the environment).",
        show_choices=True,
    ),
]
HealthPathOption = Annotated[str | None, typer.Option("--health-path", help="Path that answers when up.")]
DevcontainerOption = Annotated[
    str | None,
    typer.Option(
        "--devcontainer",
        help="Named dev container configuration (.devcontainer/<name>/devcontainer.json); '' for the default",
    ),
]
EnvOption = Annotated[
    list[str] | None, typer.Option("--env", "-e", help="Default variable KEY=VALUE (repeatable).")
]


ServiceOption = Annotated[
    list[str] | None,
    typer.Option(
        "--service",
        help="A managed service NAME=KIND[:VERSION], KIND one of postgres, redis, bucket, or "
        "NAME=catalog:ENTRY[:KEY=VALUE,...] for an entry of the operator's catalog "
        "(repeatable; replaces the project's services), e.g. --service db=postgres:16 "
        "--service mq=catalog:rabbitmq:version=3.13.",
    ),
]
NoServicesOption = Annotated[bool, typer.Option("--no-services", help="Remove every managed service.")]


def parse_services(specs: list[str] | None) -> list[dict[str, Any]]:
    """``NAME=KIND[:VERSION]`` (or ``NAME=catalog:ENTRY[:KEY=VALUE,...]``) arguments as the API's
    declarations (the server validates the rest)."""
    declared: list[dict[str, Any]] = []
    for spec in specs or []:
        name, equals, kind = spec.partition("=")
        if not equals or not name or not kind:
            raise CliError(
                "validation_failed",
                f"--service {spec!r} is not NAME=KIND[:VERSION]",
                hint="Write it as --service db=postgres:16, --service cache=redis or --service files=bucket.",
                exit_code=INVALID,
            )
        kind, _, version = kind.partition(":")
        if kind == "catalog":  # NAME=catalog:ENTRY[:KEY=VALUE,...]
            entry, _, listed = version.partition(":")
            parameters = parse_pairs([pair for pair in listed.split(",") if pair], f"--service {name}")
            declared.append({"name": name, "kind": kind, "entry": entry, "parameters": parameters})
            continue
        declared.append({"name": name, "kind": kind, **({"version": version} if version else {})})
    return declared


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
    health_path: HealthPathOption = None,
    devcontainer: DevcontainerOption = None,
    env: EnvOption = None,
    url_access: UrlAccessOption = None,
    service: ServiceOption = None,
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
        ("devcontainer", devcontainer),
        ("url_access", _url_access(url_access)),
    ):
        if value is not None:
            body[key] = value
    if env:
        body["env"] = parse_pairs(env, "--env")
    if service:
        body["backing"] = parse_services(service)
    created = connection.request("POST", "/api/v1/projects", json=body)
    if output is Format.json:
        print_json(created)
        return
    console.print(f"Created project [bold]{created['name']}[/] (id {created['id']}) in {created['team']}.")
    console.print(fields_table(_fields(created)))


@app.command("show")
@command
def show_project(
    project: Annotated[str, typer.Argument(help="The project: its id or name.")],
    server: ServerOption = None,
    output: OutputOption = Format.text,
) -> None:
    """A project's defaults for new environments, and who can open their URLs."""
    connection = Connection.signed_in(server)
    header = resources.project(connection, project)
    if output is Format.json:
        print_json(header)
        return
    console.print(fields_table([("id", header["id"]), ("name", header["name"]), *_fields(header)]))


@app.command("update")
@command
def update_project(
    project: Annotated[str, typer.Argument(help="The project: its id or name.")],
    repo: Annotated[str | None, typer.Option("--repo", help="Git repository URL to check out.")] = None,
    ref: Annotated[str | None, typer.Option("--ref", help="Default git ref.")] = None,
    run: Annotated[str | None, typer.Option("--command", help="The command that serves it.")] = None,
    description: Annotated[str | None, typer.Option("--description", help="One line about it.")] = None,
    health_path: HealthPathOption = None,
    devcontainer: DevcontainerOption = None,
    env: Annotated[
        list[str] | None,
        typer.Option("--env", "-e", help="Default variable KEY=VALUE (repeatable); replaces all of them."),
    ] = None,
    url_access: UrlAccessOption = None,
    service: ServiceOption = None,
    no_services: NoServicesOption = False,
    sleep_after: Annotated[
        int | None,
        typer.Option(
            "--sleep-after",
            min=0,
            help="Development environments sleep after this many idle minutes; 0 turns it off.",
        ),
    ] = None,
    ttl: Annotated[
        int | None,
        typer.Option(
            "--ttl", min=0, help="Development environments go after this many idle hours; 0: never."
        ),
    ] = None,
    confirm: Annotated[
        str | None,
        typer.Option(help="The project's name: removing a database a deployment environment holds takes it."),
    ] = None,
    server: ServerOption = None,
    output: OutputOption = Format.text,
) -> None:
    """Change a project's defaults; options left out stay as they are."""
    changes: dict[str, Any] = {
        key: value
        for key, value in (
            ("description", description),
            ("repo_url", repo),
            ("default_ref", ref),
            ("command", run),
            ("health_path", health_path),
            ("devcontainer", devcontainer),
            ("url_access", _url_access(url_access)),
            ("sleep_after_minutes", sleep_after),
            ("ttl_hours", ttl),
        )
        if value is not None
    }
    if env:
        changes["env"] = parse_pairs(env, "--env")
    if service or no_services:
        changes["backing"] = parse_services(service)
    if not changes:
        raise CliError(
            "validation_failed",
            "nothing to change",
            hint="Give at least one option, e.g. --url-access sign-in (see --help).",
            exit_code=INVALID,
        )
    connection = Connection.signed_in(server)
    found = resources.project(connection, project)
    if confirm:
        changes["confirm"] = confirm
    changed = connection.request("PATCH", f"/api/v1/projects/{found['id']}", json=changes)
    if output is Format.json:
        print_json(changed)
        return
    console.print(f"Updated project [bold]{changed['name']}[/] (id {changed['id']}).")
    console.print(fields_table(_fields(changed)))


def _url_access(choice: UrlAccessChoice | None) -> str | None:
    """The API's value of ``--url-access`` (people type sign-in, the API says sign_in)."""
    return None if choice is None else choice.value.replace("-", "_")


def _fields(header: dict[str, Any]) -> list[tuple[str, Any]]:
    access = header.get("url_access", "")
    label = header.get("url_access_label", "")
    return [
        ("team", header["team"]),
        ("description", header["description"] or "-"),
        ("repo", header["repo"] or "-"),
        ("ref", header["ref"] or "-"),
        ("command", header["command"]),
        ("health path", header["health_path"]),
        ("devcontainer", header.get("devcontainer") or "(default places)"),
        ("url access", f"{access} ({label})" if label else access),
        ("idle", header.get("idle_label") or "-"),
        (
            "services",
            "; ".join(
                f"{item['name']}: {item['label']} ({', '.join(item['variables'])})"
                for item in header.get("backing", [])
            )
            or "-",
        ),
    ]


def register(root: typer.Typer) -> None:
    root.add_typer(app)
