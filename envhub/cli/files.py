"""``envhub files ls|cat|put|rm``: the files of an environment's workspace.

Paths are relative to the workspace (``api/v1/files.py``): ``cat`` writes the
file's bytes to stdout (paging through a large one), ``put`` sends a local file
(or stdin, ``-``) and replaces the remote one at once, making its folders.
"""

from __future__ import annotations

import base64
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from envhub.cli import resources
from envhub.cli.client import Connection
from envhub.cli.output import Format, OutputOption, ServerOption, command, console, print_json, rows_table
from envhub.cli.resources import EnvArgument

app = typer.Typer(name="files", help="Files of an environment's workspace.", no_args_is_help=True)

RemotePath = Annotated[str, typer.Argument(help="The path, relative to the workspace.")]
# One request's worth of a file read by ``cat``.
_PAGE = 4 * 1024 * 1024


def _content_path(environment_id: int) -> str:
    return f"/api/v1/environments/{environment_id}/files/content"


@app.command("ls")
@command
def list_files(
    env: EnvArgument,
    path: Annotated[str, typer.Argument(help="A folder, relative to the workspace.")] = ".",
    server: ServerOption = None,
    output: OutputOption = Format.text,
) -> None:
    """The entries of a folder of the workspace."""
    connection = Connection.signed_in(server)
    environment_id = resources.environment_id(connection, env)
    listing = connection.request("GET", f"/api/v1/environments/{environment_id}/files", params={"path": path})
    if output is Format.json:
        print_json(listing)
        return
    console.print(
        rows_table(
            ("NAME", "TYPE", "SIZE", "MODIFIED"),
            [
                (
                    entry["name"] + ("/" if entry["type"] == "dir" else ""),
                    entry["type"],
                    entry["size"],
                    entry["modified"],
                )
                for entry in listing["entries"]
            ],
        )
    )
    if listing["truncated"]:
        console.print(f"(more than {len(listing['entries'])} entries; the first ones are shown)")


@app.command("cat")
@command
def cat(
    env: EnvArgument,
    path: RemotePath,
    server: ServerOption = None,
    output: OutputOption = Format.text,
) -> None:
    """Write a file of the workspace to stdout (its bytes, as they are)."""
    connection = Connection.signed_in(server)
    environment_id = resources.environment_id(connection, env)
    offset, pieces = 0, []
    while True:
        answer: dict[str, Any] = connection.request(
            "GET",
            _content_path(environment_id),
            params={"path": path, "offset": offset, "max_bytes": _PAGE},
        )
        data = (
            base64.b64decode(answer["content"])
            if answer["encoding"] == "base64"
            else answer["content"].encode()
        )
        if output is Format.json:
            pieces.append(data)
        else:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        offset += len(data)
        if not answer["truncated"] or not data:
            break
    if output is Format.json:
        whole = b"".join(pieces)
        try:
            content, encoding = whole.decode(), "utf-8"
        except UnicodeDecodeError:
            content, encoding = base64.b64encode(whole).decode(), "base64"
        print_json({"path": answer["path"], "size": answer["size"], "content": content, "encoding": encoding})


@app.command("put")
@command
def put(
    env: EnvArgument,
    source: Annotated[str, typer.Argument(help="A local file, or - for stdin.")],
    path: RemotePath,
    server: ServerOption = None,
    output: OutputOption = Format.text,
) -> None:
    """Create or replace a file of the workspace with a local file's bytes."""
    data = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    connection = Connection.signed_in(server)
    environment_id = resources.environment_id(connection, env)
    written = connection.request(
        "PUT",
        _content_path(environment_id),
        params={"path": path},
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    if output is Format.json:
        print_json(written)
    else:
        console.print(f"Wrote {written['path']} ({written['size']} bytes)")


@app.command("rm")
@command
def remove(
    env: EnvArgument,
    path: RemotePath,
    server: ServerOption = None,
    output: OutputOption = Format.text,
) -> None:
    """Delete a file of the workspace (folders are refused)."""
    connection = Connection.signed_in(server)
    environment_id = resources.environment_id(connection, env)
    deleted = connection.request("DELETE", _content_path(environment_id), params={"path": path})
    if output is Format.json:
        print_json(deleted)
    else:
        console.print(f"Deleted {deleted['path']}")


def register(parent: typer.Typer) -> None:
    parent.add_typer(app)
