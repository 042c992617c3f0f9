"""``envhub exec ENV -- CMD...``: run one command in an environment, no terminal.

Output streams as the command writes it (``POST /api/v1/environments/{id}/exec``,
JSON lines); the command's exit status is this command's. The runtime's
exec port merges stdout and stderr, so both arrive on stdout here.
"""

from __future__ import annotations

import base64
import json
import sys
from typing import Annotated, Any

import httpx
import typer

from envhub.cli import resources
from envhub.cli.client import Connection
from envhub.cli.errors import REMOTE_FAILURE, CliError
from envhub.cli.output import Format, OutputOption, ServerOption, command, err, print_json
from envhub.cli.resources import EnvArgument
from envhub.cli.terminal import exit_status

TIMED_OUT_STATUS = 124  # as timeout(1) says it


def run_command(
    connection: Connection,
    environment_id: int,
    argv: list[str],
    *,
    container: str | None,
    timeout: float,
    max_output: int,
    fmt: Format,
) -> int:
    body: dict[str, Any] = {"command": argv, "timeout_seconds": timeout, "max_output_bytes": max_output}
    if container:
        body["container"] = container
    collected = bytearray()
    end: dict[str, Any] = {}
    limits = httpx.Timeout(30.0, read=timeout + 60.0)
    out = sys.stdout.buffer
    with connection.stream(
        "POST", f"/api/v1/environments/{environment_id}/exec", limits, json=body
    ) as answer:
        for line in answer.iter_lines():
            if not line:
                continue
            record = json.loads(line)
            if "output" in record:
                chunk = base64.b64decode(record["output"])
                if fmt is Format.json:
                    collected += chunk
                else:
                    out.write(chunk)
                    out.flush()
            else:
                end = record
    if not end:
        raise CliError(
            "connection_lost", "the connection ended before the command did", exit_code=REMOTE_FAILURE
        )
    code = end.get("exit_code")
    status = TIMED_OUT_STATUS if end.get("timed_out") else exit_status(code)
    if fmt is Format.json:
        print_json({**end, "output": collected.decode("utf-8", "replace")})
        return status
    if end.get("timed_out"):
        err.print(f"envhub: the command was still running after {timeout:g} s and was ended")
    elif end.get("truncated"):
        err.print(f"envhub: the command's output passed {max_output} bytes; it was ended there")
    return status


@command
def exec_command(
    env: EnvArgument,
    argv: Annotated[list[str], typer.Argument(help="The command and its arguments (after --).")],
    container: Annotated[str | None, typer.Option("--container", help="Which container.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds before the command is ended.", min=1)] = 300.0,
    max_output: Annotated[int, typer.Option(help="Bytes of output before it is ended.", min=1)] = 10_485_760,
    server: ServerOption = None,
    output: OutputOption = Format.text,
) -> None:
    """Run a command in an environment (no TTY); exits with its status."""
    try:
        connection = Connection.signed_in(server)
        status = run_command(
            connection,
            resources.environment_id(connection, env),
            argv,
            container=container,
            timeout=timeout,
            max_output=max_output,
            fmt=output,
        )
    except CliError as exc:
        exc.exit_code = REMOTE_FAILURE
        raise
    raise typer.Exit(status)


def register(app: typer.Typer) -> None:
    # Options go before ``--``; everything after it is the command, untouched.
    app.command(name="exec")(exec_command)
