"""``envhub env logs``: an environment's output, searched, cut to a time range, followed,
of a crashed container's previous instance, or saved to a file; ``envhub env top``: what its
containers use.

The filters are applied by the server (REST ``/logs``, ``/logs/download``), so the CLI
shows what the dashboard and an agent would.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from envhub.cli import resources
from envhub.cli.client import Connection
from envhub.cli.environments import FOLLOW_SECONDS, app
from envhub.cli.errors import UNSUPPORTED, CliError
from envhub.cli.output import (
    Format,
    OutputOption,
    ServerOption,
    command,
    console,
    err,
    print_json,
    print_json_line,
    rows_table,
)
from envhub.cli.resources import EnvArgument

SAVE_TIMEOUT = httpx.Timeout(30.0, read=120.0)


def _params(
    *,
    container: str | None,
    previous: bool,
    grep: str,
    regex: bool,
    ignore_case: bool,
    since: str,
    until: str,
    timestamps: bool,
) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if container:
        params["container"] = container
    for name, value in (
        ("previous", previous),
        ("regex", regex),
        ("ignore_case", ignore_case),
        ("timestamps", timestamps),
    ):
        if value:
            params[name] = "true"
    for name, text in (("search", grep), ("since", since), ("until", until)):
        if text:
            params[name] = text
    return params


def _save(connection: Connection, path: str, params: dict[str, Any], target: Path, output: Format) -> None:
    with connection.stream("GET", path + "/download", SAVE_TIMEOUT, params=params) as answer:
        try:
            with target.open("wb") as handle:
                size = 0
                for chunk in answer.iter_bytes():
                    handle.write(chunk)
                    size += len(chunk)
        except OSError as exc:
            raise CliError("io_error", f"cannot write {target}: {exc.strerror or exc}") from None
    lines = target.read_bytes().count(b"\n")
    if output is Format.json:
        print_json({"saved": str(target), "lines": lines, "bytes": size})
    else:
        console.print(f"Saved {lines} lines to {target}")


@command
def logs(
    env: EnvArgument,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines (Ctrl-C ends).")
    ] = False,
    container: Annotated[
        str | None, typer.Option("--container", "-c", help="One service's container.")
    ] = None,
    tail: Annotated[int, typer.Option("--tail", "-n", min=0, max=5000, help="Lines from the end.")] = 200,
    previous: Annotated[
        bool,
        typer.Option("--previous", "-p", help="The container's instance before its last restart (a crash)."),
    ] = False,
    grep: Annotated[
        str, typer.Option("--grep", "-g", help="Only lines containing this (searched on the server).")
    ] = "",
    regex: Annotated[bool, typer.Option("--regex", "-E", help="--grep is a regular expression.")] = False,
    ignore_case: Annotated[bool, typer.Option("--ignore-case", "-i", help="--grep ignores case.")] = False,
    since: Annotated[
        str, typer.Option("--since", help="From then: 15m, 2h, 1d back, or 2026-12-07T17:00:00Z.")
    ] = "",
    until: Annotated[str, typer.Option("--until", help="Until then, as --since.")] = "",
    timestamps: Annotated[
        bool, typer.Option("--timestamps", "-t", help="Start each line with the time it was printed.")
    ] = False,
    save: Annotated[
        Path | None,
        typer.Option(
            "--save", help="Write the lines (all that pass the filters) to this file.", dir_okay=False
        ),
    ] = None,
    server: ServerOption = None,
    output: OutputOption = Format.text,
) -> None:
    """Print the environment's output; -f follows it, --grep/--since/--until narrow it, --save keeps it."""
    connection = Connection.signed_in(server)
    path = f"/api/v1/environments/{resources.environment_id(connection, env)}/logs"
    params = _params(
        container=container,
        previous=previous,
        grep=grep,
        regex=regex,
        ignore_case=ignore_case,
        since=since,
        until=until,
        timestamps=timestamps,
    )
    if save is not None:
        _save(connection, path, params, save, output)
        return
    params["tail"] = tail
    if not follow:
        page = connection.request("GET", path, params=params)
        if output is Format.json:
            print_json(page)
            return
        sys.stdout.write("".join(line + "\n" for line in page["lines"]))
        if page["matched"] > len(page["lines"]):
            err.print(
                f"[dim]{page['matched']} lines matched; shown: the last {len(page['lines'])} (--tail)[/]"
            )
        elif page["capped"]:
            err.print(f"[dim]Only the last {page['scanned']} lines were searched.[/]")
        return
    params.update(follow="true", seconds=FOLLOW_SECONDS)
    limits = httpx.Timeout(30.0, read=FOLLOW_SECONDS + 30.0)
    with connection.stream("GET", path, limits, params=params) as answer:
        for raw in answer.iter_lines():
            if not raw:
                continue
            record = json.loads(raw)
            if output is Format.json:
                print_json_line(record)
            else:
                sys.stdout.write(record["line"] + "\n")
                sys.stdout.flush()


def register(root: typer.Typer) -> None:
    """The commands join ``envhub env`` (already on ``root``)."""
    app.command("logs")(logs)
    app.command("top")(top)


@command
def top(env: EnvArgument, server: ServerOption = None, output: OutputOption = Format.text) -> None:
    """CPU (millicores) and memory per container, as kubectl top prints them, with requests, limits,
    the memory peak where the runtime knows it, and where the figures come from."""
    connection = Connection.signed_in(server)
    view = connection.request(
        "GET", f"/api/v1/environments/{resources.environment_id(connection, env)}/usage"
    )
    if output is Format.json:
        print_json(view)
    if not view["available"]:
        raise CliError(
            "not_supported",
            view["note"],
            hint="The dashboard and `envhub env logs` work without it.",
            exit_code=UNSUPPORTED,
        )
    if output is Format.json:
        return
    if not view["rows"]:
        console.print(view["note"] or "No container is running.")
        return
    rows = [
        (
            row["pod"],
            row["container"],
            row["cpu"],
            row["memory"],
            row["requests"],
            row["limits"],
            row.get("memory_peak") or "-",
        )
        for row in view["rows"]
    ]
    console.print(rows_table(("POD", "CONTAINER", "CPU", "MEMORY", "REQUESTS", "LIMITS", "PEAK"), rows))
    if view.get("source"):  # never a silent fallback: where the figures come from, and why
        console.print(f"Measured from {view['source']}.", style="dim")
    if view.get("source_note"):
        console.print(view["source_note"], style="yellow")
