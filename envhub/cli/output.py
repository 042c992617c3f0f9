"""Printing: rich for people, ``--output json`` for programs; failures with their code and next step."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from envhub.cli.errors import INTERRUPTED, CliError

console = Console(highlight=False)
err = Console(stderr=True, highlight=False)


class Format(StrEnum):
    text = "text"
    json = "json"


OutputOption = Annotated[
    Format,
    typer.Option(
        "--output",
        "-o",
        envvar="ENVHUB_OUTPUT",
        help="text for people, json for programs.",
        show_default=True,
    ),
]
ServerOption = Annotated[
    str | None,
    typer.Option(
        "--server", envvar="ENVHUB_SERVER", help="envhub's URL (default: the one you signed in to)."
    ),
]


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def print_json_line(data: Any) -> None:
    sys.stdout.write(json.dumps(data, default=str) + "\n")
    sys.stdout.flush()


def fields_table(rows: Sequence[tuple[str | Text, Any]]) -> Table:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for name, value in rows:
        # Text is printed as it is: what a repository or a workload wrote is never read as markup.
        table.add_row(name, value if isinstance(value, Text) else "" if value is None else str(value))
    return table


def rows_table(headers: tuple[str, ...], rows: list[tuple[Any, ...]]) -> Table:
    """A plain table (a header, no borders), as ``kubectl get`` and ``gh`` print lists."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    for header in headers:
        table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(*("" if value is None else str(value) for value in row))
    return table


def report(error: CliError, fmt: Format) -> None:
    if fmt is Format.json:
        sys.stderr.write(json.dumps({"error": error.to_dict()}) + "\n")
        return
    # The message may quote what a repository holds (a lifecycle command): never read as markup.
    err.print(f"[bold red]error[/]: {escape(error.message)} [dim]({escape(error.code)})[/]", soft_wrap=True)
    if error.hint:
        err.print(f"[bold]next[/]: {escape(error.hint)}", soft_wrap=True)


P = ParamSpec("P")
R = TypeVar("R")


def command(func: Callable[P, R]) -> Callable[P, R]:
    """Run a command: a CliError is printed (text or JSON) and becomes its exit status."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        fmt = kwargs.get("output", Format.text)
        try:
            return func(*args, **kwargs)
        except CliError as exc:
            report(exc, fmt if isinstance(fmt, Format) else Format.text)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(INTERRUPTED) from None

    return wrapper
