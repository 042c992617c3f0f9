"""``envhub releases ...``: a deployment environment's releases, and the CI call that makes them.

``create`` is what CI runs after a merge: the commit, and the digests of the
images it pushed. A token with only the ``deploy`` scope is enough for it
(and can do nothing else: not read the project, not approve); CI passes it in
``ENVHUB_TOKEN`` with ``ENVHUB_SERVER``, and names the project by id, since
looking a name up needs the ``read`` scope. People then read a release
(gates, approvals, what changes object by object), approve, cancel, roll
back or promote it. Everything goes through REST API v1.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Group
from rich.text import Text

from envhub.cli import resources
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
from envhub.cli.projects import parse_pairs
from envhub.cli.resources import EnvArgument

app = typer.Typer(
    name="releases",
    help="List, read, create, approve, cancel, roll back and promote releases.",
    no_args_is_help=True,
)

ReleaseArgument = Annotated[
    int, typer.Argument(metavar="RELEASE_ID", min=1, help="The release's id (`envhub releases list`).")
]
MARKS = {True: "[green]✓[/]", False: "[red]✗[/]"}
STATUS_STYLE = {
    "ready": "green",
    "failed": "red",
    "waiting": "yellow",
    "rendering": "blue",
    "deploying": "blue",
}


def _release_path(release_id: int, what: str = "") -> str:
    return f"/api/v1/releases/{release_id}" + (f"/{what}" if what else "")


# --- printing, shared with `envhub deployments` -------------------------------------------


def status_text(status: str) -> str:
    style = STATUS_STYLE.get(status)
    return f"[{style}]{status}[/]" if style else status


def release_line(row: dict[str, Any]) -> str:
    """``#3 1a2b3c4d5e6f ready`` and where it came from."""
    ref = f" ({row['ref']})" if row["ref"] else ""
    return f"#{row['number']} {row['short_commit']}{ref} {status_text(row['status'])}"


def diff_text(changes: list[dict[str, Any]]) -> Group:
    """Object-by-object changes as a unified diff: coloured on a terminal, plain otherwise."""
    parts: list[Any] = []
    for change in changes:
        parts.append(Text(f"{change['key']} ({change['change']})", style="bold"))
        body = Text()
        for line in change["diff"].splitlines():
            style = ""
            if line.startswith(("+++", "---")):
                style = "bold"
            elif line.startswith("+"):
                style = "green"
            elif line.startswith("-"):
                style = "red"
            elif line.startswith("@@"):
                style = "cyan"
            body.append(line + "\n", style=style)
        parts.append(body)
    return Group(*parts)


def _print_rows(rows: list[dict[str, Any]]) -> None:
    console.print(
        rows_table(
            ("ID", "ENVIRONMENT", "#", "STATUS", "COMMIT", "REF", "TRIGGER", "BY", "CREATED", "MESSAGE"),
            [
                (
                    r["id"],
                    r["environment"],
                    r["number"],
                    r["status"],
                    r["short_commit"],
                    r["ref"],
                    r["trigger"],
                    r["triggered_by"],
                    r["created"],
                    r["message"],
                )
                for r in rows
            ],
        )
    )


def _print_detail(detail: dict[str, Any], objects: bool = False) -> None:
    row = detail["release"]
    images = ", ".join(f"{name}@{digest}" for name, digest in row["images"].items())
    rows: list[tuple[str, Any]] = [
        ("release", f"{detail['project']}/{row['environment']} #{row['number']} (id {row['id']})"),
        ("status", f"{status_text(row['status'])}" + (f": {row['message']}" if row["message"] else "")),
        ("commit", row["commit"] + (f" ({row['ref']})" if row["ref"] else "")),
        ("trigger", f"{row['trigger']} by {row['triggered_by']}, {row['created']}"),
        ("digest", row["digest"] or "-"),
    ]
    if row["chart"]:
        rows.append(("chart", row["chart"]))
    if images:
        rows.append(("images", images))
    if row["took"]:
        rows.append(("took", row["took"]))
    allowed = [action for action, yes in detail["allowed"].items() if yes]
    rows.append(("you may", ", ".join(allowed) or "only read it"))
    console.print(fields_table(rows))
    if detail["gates"]:
        console.print("[bold]gates[/]")
        for gate in detail["gates"]:
            console.print(f"  {MARKS[bool(gate['passed'])]} {gate['gate']}: {gate['reason']}", soft_wrap=True)
    if detail["approvals_needed"] or detail["approvals"]:
        console.print(
            f"[bold]approvals[/] ({len(detail['approvals'])} of {detail['approvals_needed']}, "
            f"from a team {detail['approver_role']} or above)"
        )
        for approval in detail["approvals"]:
            comment = f": {approval['comment']}" if approval["comment"] else ""
            console.print(f"  {approval['name']}, {approval['at']}{comment}", soft_wrap=True)
    if detail["workloads"]:
        console.print("[bold]workloads[/]")
        for workload in detail["workloads"]:
            text = " ".join(value for value in workload.values() if value)
            console.print(f"  {text}", soft_wrap=True)
    if detail["notes"]:
        console.print(f"[bold]notes[/]: {detail['notes']}", soft_wrap=True)
    against = detail["against_id"]
    if against is None:
        console.print("[bold]changes[/]: nothing runs there yet; every object is new")
    elif against == row["id"]:
        console.print("[bold]changes[/]: none (this is what runs there)")
    elif not detail["changes"]:
        console.print(f"[bold]changes[/] against release {against}: none")
    else:
        console.print(f"[bold]changes[/] against release {against}:")
    if detail["changes"]:
        console.print(diff_text(detail["changes"]), soft_wrap=True)
    if objects:
        console.print("[bold]objects[/]")
        console.print(Text(detail["objects"]), soft_wrap=True)


def _answer(detail: dict[str, Any], output: Format, said: str) -> None:
    if output is Format.json:
        print_json(detail)
        return
    console.print(said)
    _print_detail(detail)


# --- commands -----------------------------------------------------------------------------


@app.command("list")
@command
def list_releases(
    env: EnvArgument,
    limit: Annotated[int, typer.Option("--limit", "-L", min=1, max=200, help="Releases per page.")] = 20,
    offset: Annotated[int, typer.Option("--offset", min=0, help="Skip this many (newest first).")] = 0,
    server: ServerOption = None,
    output: OutputOption = Format.text,
) -> None:
    """A deployment environment's releases, newest first (one page: --limit, --offset)."""
    connection = Connection.signed_in(server)
    environment_id = resources.environment_id(connection, env)
    page = connection.request(
        "GET",
        f"/api/v1/environments/{environment_id}/releases",
        params={"limit": limit, "offset": offset},
    )
    if output is Format.json:
        print_json(page)
        return
    if not page["items"]:
        console.print("No releases." if not offset else f"No releases after the first {offset}.")
        return
    _print_rows(page["items"])
    shown = f"{page['offset'] + 1}-{page['offset'] + len(page['items'])} of {page['total']}"
    more = page["offset"] + len(page["items"]) < page["total"]
    console.print(
        f"[dim]{shown}"
        + (f"; the next page: --offset {page['offset'] + len(page['items'])}" if more else "")
        + "[/]"
    )


@app.command("show")
@command
def show(
    release: ReleaseArgument,
    against: Annotated[
        int | None,
        typer.Option("--against", min=1, help="Diff against this release (default: what runs there)."),
    ] = None,
    objects: Annotated[
        bool, typer.Option("--objects", help="Print the rendered objects too (YAML).")
    ] = False,
    server: ServerOption = None,
    output: OutputOption = Format.text,
) -> None:
    """A release: its gates (✓/✗ and why), approvals, workloads, and what it changes, object by object."""
    connection = Connection.signed_in(server)
    params = {"against": against} if against is not None else {}
    detail = connection.request("GET", _release_path(release), params=params)
    if output is Format.json:
        print_json(detail)
        return
    _print_detail(detail, objects=objects)


@app.command("create")
@command
def create(
    project: Annotated[
        str,
        typer.Argument(metavar="PROJECT", help="The project: its id (what a deploy token can name) or name."),
    ],
    commit: Annotated[str, typer.Option("--commit", help="The full 40-character SHA to release.")],
    ref: Annotated[str, typer.Option("--ref", help="The branch it was merged to, e.g. main.")] = "",
    image: Annotated[
        list[str] | None,
        typer.Option(
            "--image", help="An image CI pushed, NAME=sha256:DIGEST (repeatable); it runs by that digest."
        ),
    ] = None,
    server: ServerOption = None,
    output: OutputOption = Format.text,
) -> None:
    """Release a commit (the CI call): rendered once, it lands in the environments that take merges.

    A token with only the deploy scope suffices: set ENVHUB_SERVER and
    ENVHUB_TOKEN in CI and name the project by id. Asking twice for the
    same commit and images answers with the same releases.
    """
    images = parse_pairs(image, "--image")
    connection = Connection.signed_in(server)
    project_id = _project_id(connection, project)
    answer = connection.request(
        "POST",
        f"/api/v1/projects/{project_id}/releases",
        json={"commit": commit, "ref": ref, "images": images},
    )
    if output is Format.json:
        print_json(answer)
        return
    made = answer["releases"]
    if not made:
        console.print("No release was made: no environment takes releases from merges.")
        return
    for row in made:
        console.print(
            f"Released {row['short_commit']} to [bold]{row['environment']}[/]: release "
            f"#{row['number']} (id {row['id']}) is {row['status']}."
        )


def _project_id(connection: Connection, ref: str) -> int:
    """The project's id without reading it when it is one (a deploy-scoped token cannot read)."""
    if ref.isdigit():
        return int(ref)
    try:
        return int(resources.project(connection, ref)["id"])
    except CliError as exc:
        if exc.code != "forbidden":
            raise
        raise CliError(
            exc.code,
            f"{exc.message}; a token without the read scope cannot look a project up by name",
            hint="Name the project by its id (`envhub projects show NAME` prints it).",
            exit_code=exc.exit_code,
        ) from None


@app.command("approve")
@command
def approve(
    release: ReleaseArgument,
    comment: Annotated[str, typer.Option("--comment", "-m", help="Why, for the audit trail.")] = "",
    server: ServerOption = None,
    output: OutputOption = Format.text,
) -> None:
    """Approve a waiting release (someone else's: who triggered it cannot approve it)."""
    connection = Connection.signed_in(server)
    detail = connection.request("POST", _release_path(release, "approve"), json={"comment": comment})
    _answer(detail, output, f"Approved release {release}.")


@app.command("cancel")
@command
def cancel(release: ReleaseArgument, server: ServerOption = None, output: OutputOption = Format.text) -> None:
    """Cancel a release that is rendering or waiting."""
    connection = Connection.signed_in(server)
    detail = connection.request("POST", _release_path(release, "cancel"))
    _answer(detail, output, f"Cancelled release {release}.")


@app.command("rollback")
@command
def rollback(
    release: ReleaseArgument, server: ServerOption = None, output: OutputOption = Format.text
) -> None:
    """Land this earlier release's content again, as a new release of its environment."""
    connection = Connection.signed_in(server)
    detail = connection.request("POST", _release_path(release, "rollback"))
    row = detail["release"]
    _answer(
        detail,
        output,
        f"Rolling {row['environment']} back to release {release}: new release "
        f"#{row['number']} (id {row['id']}).",
    )


@app.command("promote")
@command
def promote(
    release: ReleaseArgument,
    to: Annotated[str, typer.Option("--to", help="The environment taking from this one: production.")],
    server: ServerOption = None,
    output: OutputOption = Format.text,
) -> None:
    """Promote a ready release to the environment that takes releases from its own."""
    if not to:
        raise CliError("validation_failed", "--to needs an environment's name", exit_code=INVALID)
    connection = Connection.signed_in(server)
    detail = connection.request("POST", _release_path(release, "promote"), json={"to": to})
    row = detail["release"]
    _answer(detail, output, f"Promoted release {release} to {to}: release #{row['number']} (id {row['id']}).")


def register(root: typer.Typer) -> None:
    root.add_typer(app)
