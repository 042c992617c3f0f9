"""``envhub env cost ENV`` and ``envhub usage TEAM``: hours running and asleep, CPU and memory
hours, and the estimated cost at the operator's prices (hours only when none are set)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer

from envhub.cli import resources
from envhub.cli.client import Connection
from envhub.cli.environments import app as env_app
from envhub.cli.output import Format, OutputOption, ServerOption, command, console, print_json, rows_table
from envhub.cli.resources import EnvArgument


class WindowChoice(StrEnum):
    month = "month"
    last_30_days = "30d"


WindowOption = Annotated[
    WindowChoice,
    typer.Option("--window", "-w", help="month: this calendar month (UTC) up to now; 30d: the last 30 days."),
]


def _cost(figures: dict[str, Any]) -> str:
    return "" if figures["cost"] is None else f"{figures['cost']:.2f} {figures['currency']}"


@command
def cost(
    env: EnvArgument,
    window: WindowOption = WindowChoice.month,
    server: ServerOption = None,
    output: OutputOption = Format.text,
) -> None:
    """Hours running and asleep, reserved CPU and memory hours, and the estimated cost."""
    connection = Connection.signed_in(server)
    environment_id = resources.environment_id(connection, env)
    view = connection.request(
        "GET", f"/api/v1/environments/{environment_id}/costs", params={"window": window.value}
    )
    if output is Format.json:
        print_json(view)
        return
    period = f"{view['start'][:10]} to {view['end'][:16]} UTC"
    console.print(f"{period} · reserves {view['reserved']} while running")
    console.print(view["figures"]["summary"])
    if not view["priced"]:
        console.print("[dim]No prices are set (ENVHUB_PRICE_CPU_HOUR, ENVHUB_PRICE_MEMORY_GIB_HOUR).[/]")


@command
def usage(
    team: Annotated[str, typer.Argument(help="The team (name or id).")],
    window: WindowOption = WindowChoice.month,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=200, help="Environments shown.")] = 50,
    server: ServerOption = None,
    output: OutputOption = Format.text,
) -> None:
    """A team's total hours and estimated cost, and its environments, costliest first."""
    connection = Connection.signed_in(server)
    team_id = resources.team_id(connection, team)
    view = connection.request(
        "GET", f"/api/v1/teams/{team_id}/costs", params={"window": window.value, "limit": limit}
    )
    if output is Format.json:
        print_json(view)
        return
    console.print(f"{view['team']} · {view['start'][:10]} to {view['end'][:16]} UTC")
    console.print(f"Total: {view['total']['summary']}")
    if not view["environments"]:
        console.print("No environment ran or slept in this window.")
        return
    rows = [
        (
            row["project"],
            row["name"],
            row["phase"],
            f"{row['figures']['running_hours']:.1f}",
            f"{row['figures']['asleep_hours']:.1f}",
            f"{row['figures']['cpu_hours']:.1f}",
            f"{row['figures']['memory_gib_hours']:.1f}",
            _cost(row["figures"]),
        )
        for row in view["environments"]
    ]
    headers = ("PROJECT", "ENVIRONMENT", "PHASE", "RUNNING H", "ASLEEP H", "CPU-H", "GIB-H", "COST")
    console.print(rows_table(headers, rows))
    if view["next_cursor"]:
        console.print(f"[dim]Only the first {limit}; raise --limit or use the REST API's cursor.[/]")


def register(root: typer.Typer) -> None:
    """``cost`` joins ``envhub env``; ``usage`` is a command of its own."""
    env_app.command("cost")(cost)
    root.command("usage")(usage)
