"""Finding things by the names people type: teams, projects, ``project/name`` environments.

The API addresses everything by id; people remember names. Each lookup here
asks the API (so it sees exactly what the caller may see) and accepts an
exact match only: a name that matches nothing, or more than one thing, is a
``not_found`` error that says how to be precise, never a guess.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import typer

from envhub.cli.client import Connection
from envhub.cli.errors import NOT_FOUND, CliError

PAGE = 200  # the API's largest page


def complete_environment(ctx: typer.Context, incomplete: str) -> list[str]:
    """Shell completion of ENV: project names first, then ``project/name`` of its environments.

    Completion runs on every Tab, so it asks for one page at most and stays
    silent when it cannot ask (not signed in, envhub unreachable).
    """
    try:
        connection = Connection.signed_in(ctx.params.get("server"))
        project_ref, slash, _ = incomplete.partition("/")
        if not slash:
            listed = connection.request(
                "GET", "/api/v1/projects", params={"search": incomplete, "limit": PAGE}
            )
            return [f"{row['name']}/" for row in listed["items"] if row["name"].startswith(incomplete)]
        owner = project(connection, project_ref)
        path = f"/api/v1/projects/{owner['id']}/environments"
        listed = connection.request("GET", path, params={"limit": PAGE})
        names = [f"{project_ref}/{row['name']}" for row in listed["items"]]
        return [name for name in names if name.startswith(incomplete)]
    except CliError:
        return []


EnvArgument = Annotated[
    str,
    typer.Argument(
        metavar="ENV",
        help="The environment: its id, or project/name (e.g. shop/dev).",
        autocompletion=complete_environment,
    ),
]


def pages(
    connection: Connection, path: str, params: dict[str, Any], limit: int | None = None
) -> Iterator[Any]:
    """The items of a cursor-paged list, page after page, at most ``limit`` of them."""
    cursor: str | None = None
    given = 0
    while True:
        size = PAGE if limit is None else max(1, min(PAGE, limit - given))
        query = {key: value for key, value in params.items() if value not in (None, "")}
        query["limit"] = size
        if cursor:
            query["cursor"] = cursor
        page = connection.request("GET", path, params=query)
        for item in page["items"]:
            if limit is not None and given >= limit:
                return
            given += 1
            yield item
        cursor = page.get("next_cursor")
        if not cursor or (limit is not None and given >= limit):
            return


def _not_found(what: str, name: str, hint: str) -> CliError:
    return CliError("not_found", f"no {what} named {name!r} that you can see", hint=hint, exit_code=NOT_FOUND)


def _ambiguous(what: str, name: str, hint: str) -> CliError:
    return CliError("not_found", f"more than one {what} is named {name!r}", hint=hint, exit_code=NOT_FOUND)


def team_id(connection: Connection, ref: str) -> int:
    """A team by id or name (its short name or its display name)."""
    if ref.isdigit():
        return int(ref)
    teams = connection.request("GET", "/api/v1/teams")
    found = [t for t in teams if ref in (t["name"], t["display_name"])]
    hint = "Use the name or id of a team you belong to."
    if not found:
        raise _not_found("team", ref, hint)
    if len(found) > 1:
        raise _ambiguous("team", ref, "Use the team's id.")
    return int(found[0]["id"])


def project(connection: Connection, ref: str) -> dict[str, Any]:
    """A project by id or exact name: its header (id, name, team, ...)."""
    if ref.isdigit():
        header: dict[str, Any] = connection.request("GET", f"/api/v1/projects/{int(ref)}")
        return header
    found = [row for row in pages(connection, "/api/v1/projects", {"search": ref}) if row["name"] == ref]
    if not found:
        raise _not_found("project", ref, "List them with `envhub projects ls`.")
    if len(found) > 1:
        raise _ambiguous("project", ref, "Use the project's id (`envhub projects ls` shows it).")
    chosen: dict[str, Any] = connection.request("GET", f"/api/v1/projects/{int(found[0]['id'])}")
    return chosen


def environment_id(connection: Connection, ref: str) -> int:
    """An environment by id, or by ``project/name`` (the project by id or name)."""
    if ref.isdigit() and int(ref) > 0:
        return int(ref)
    project_ref, slash, name = ref.rpartition("/")
    if not slash or not project_ref or not name:
        raise CliError(
            "not_found",
            f"{ref!r} is neither an environment id nor project/name",
            hint="Name it by id (`envhub env ls`) or as project/name, e.g. shop/dev.",
            exit_code=NOT_FOUND,
        )
    owner = project(connection, project_ref)
    path = f"/api/v1/projects/{owner['id']}/environments"
    found = [row for row in pages(connection, path, {"search": name}) if row["name"] == name]
    hint = f"List them with `envhub env ls --project {project_ref}`."
    if not found:
        raise _not_found(f"environment in {project_ref}", name, hint)
    if len(found) > 1:
        raise _ambiguous(f"environment in {project_ref}", name, "Use the environment's id.")
    return int(found[0]["id"])
