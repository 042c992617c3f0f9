"""``envhub tui``: the environments you can see, live, in the terminal (Textual).

One table of every environment in every project you can see, refreshed every
few seconds from REST API v1; the selected one's logs below it. Keys: ``n``
creates (``project/name``), ``d`` deletes (after a ``y``), ``l`` reloads the
logs, ``s`` hands the terminal over to ``envhub shell`` and takes it back when
the shell ends, ``r`` refreshes, ``q`` quits. Everything goes through the same
API calls as the ``env`` commands, so rights and errors are the same.

Textual is imported when the command runs (envhub/cli/tui_app.py), not by every
other command: it is a good part of the CLI's start-up time.
"""

from __future__ import annotations

from typing import Annotated

import typer

from envhub.cli.client import Connection
from envhub.cli.output import ServerOption, command

REFRESH_SECONDS = 3.0


@command
def tui(
    server: ServerOption = None,
    every: Annotated[
        float, typer.Option("--refresh", min=0.5, help="Seconds between refreshes.")
    ] = REFRESH_SECONDS,
) -> None:
    """The environments you can see, live: logs, create, delete, and a shell (q quits)."""
    from envhub.cli.tui_app import EnvhubTui

    EnvhubTui(Connection.signed_in(server), every).run()


def register(app: typer.Typer) -> None:
    app.command()(tui)
