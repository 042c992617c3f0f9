"""``envhub env sleep | wake | pin | unpin``: idle sleep by hand, and keeping an environment up.

A development environment sleeps by itself after its project's idle time and
wakes when its URL is visited or a command runs in it; these say it outright.
"""

from __future__ import annotations

from typing import Any

import typer

from envhub.cli import resources
from envhub.cli.client import Connection
from envhub.cli.environments import TimeoutOption, WaitOption, _finish, _path, app
from envhub.cli.output import Format, OutputOption, ServerOption, command, console, print_json
from envhub.cli.resources import EnvArgument
from envhub.domain.phases import Phase


@app.command("sleep")
@command
def sleep(
    env: EnvArgument,
    wait: WaitOption = False,
    timeout: TimeoutOption = 120.0,
    server: ServerOption = None,
    output: OutputOption = Format.text,
) -> None:
    """Put a development environment to sleep now: its processes stop, its workspace stays."""
    connection = Connection.signed_in(server)
    started = connection.request("POST", _path(resources.environment_id(connection, env), "sleep"))
    _finish(connection, started, Phase.sleeping, wait, timeout, output, "Putting to sleep")


@app.command("wake")
@command
def wake(
    env: EnvArgument,
    wait: WaitOption = False,
    timeout: TimeoutOption = 600.0,
    server: ServerOption = None,
    output: OutputOption = Format.text,
) -> None:
    """Wake a sleeping environment: it starts again from its workspace."""
    connection = Connection.signed_in(server)
    started = connection.request("POST", _path(resources.environment_id(connection, env), "wake"))
    _finish(connection, started, Phase.ready, wait, timeout, output, "Waking")


def _pin(env: str, server: str | None, output: Format, *, pinned: bool) -> None:
    connection = Connection.signed_in(server)
    environment_id = resources.environment_id(connection, env)
    path = _path(environment_id, "pin")
    # Each request said outright, so the parity reading (tests/support/callgraph.py) sees both.
    idle: dict[str, Any] = connection.request("PUT", path) if pinned else connection.request("DELETE", path)
    if output is Format.json:
        print_json(idle)
        return
    if pinned:
        console.print(f"Environment {environment_id} is pinned: it neither sleeps nor expires.")
        return
    when = [
        f"sleeps {idle['sleeps']}" if idle["sleeps"] else "",
        f"expires {idle['expires']}" if idle["expires"] else "",
    ]
    said = " and ".join(part for part in when if part) or "neither sleeps nor expires by itself"
    console.print(f"Environment {environment_id} is unpinned: if left alone it {said}.")


@app.command("pin")
@command
def pin(env: EnvArgument, server: ServerOption = None, output: OutputOption = Format.text) -> None:
    """Pin an environment: it neither sleeps when idle nor expires."""
    _pin(env, server, output, pinned=True)


@app.command("unpin")
@command
def unpin(env: EnvArgument, server: ServerOption = None, output: OutputOption = Format.text) -> None:
    """Unpin an environment: idle sleep and its TTL apply again, counted from now."""
    _pin(env, server, output, pinned=False)


def register(root: typer.Typer) -> None:
    """The commands join ``envhub env`` (registered by environments.py)."""
