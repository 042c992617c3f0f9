"""``envhub``: the command's entry point and its commands.

Each command module registers its commands on :data:`app`; ``run`` is the
console script.
"""

from __future__ import annotations

from typing import Annotated

import typer

from envhub.cli import (
    auth,
    backups,
    costs,
    deployments,
    env_inside,
    environments,
    files,
    kube,
    processes,
    projects,
    releases,
    running,
    services,
    sleep,
    terminal,
    tui,
)

VERSION = "0.1.0"

app = typer.Typer(
    name="envhub",
    help="envhub from your terminal: projects, environments, deployments and releases, shells, commands "
    "and kubectl access.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"envhub {VERSION}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """envhub from your terminal.

    Exit status: 0 ok, 1 failure, 2 usage, 3 not signed in, 4 forbidden, 5 not
    found, 6 conflict, 7 invalid, 8 unavailable, 9 timed out, 10 not supported;
    `shell` and `exec` pass the remote command's status through (255: envhub failed).
    """


_MODULES = (
    auth,
    terminal,
    running,
    files,
    processes,
    kube,
    projects,
    environments,
    env_inside,
    costs,
    sleep,
    services,
    backups,
    deployments,
    releases,
    tui,
)
for module in _MODULES:
    module.register(app)


def run() -> None:
    app(prog_name="envhub")
