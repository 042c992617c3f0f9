"""``envhub projects github connect|show|set|rotate-secret|disconnect``: a project's repository.

Credentials never go on the command line (shell history, ``ps``): the App's
private key and the token are read from a file (``-`` for standard input) or
typed at a hidden prompt. The webhook secret is printed once, when it is made.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from envhub.cli import resources
from envhub.cli.client import Connection
from envhub.cli.errors import INVALID, CliError
from envhub.cli.output import Format, OutputOption, ServerOption, command, console, fields_table, print_json

app = typer.Typer(name="github", help="Connect a project to its GitHub repository.", no_args_is_help=True)

ProjectArgument = Annotated[str, typer.Argument(metavar="PROJECT", help="The project (name or id).")]


def _read_secret(source: str | None, prompt: str, option: str) -> str:
    """A credential from a file, ``-`` (standard input) or a hidden prompt."""
    if source == "-":
        return sys.stdin.read().strip()
    if source:
        try:
            return Path(source).expanduser().read_text().strip()
        except OSError as exc:
            raise CliError(
                "validation_failed",
                f"cannot read {option} {source}: {exc.strerror}",
                hint=f"Pass a readable file to {option}, or - to read standard input.",
                exit_code=INVALID,
            ) from None
    if not sys.stdin.isatty():
        raise CliError(
            "validation_failed",
            f"{option} is needed when standard input is not a terminal",
            hint=f"Pass {option} FILE (or - to read it from standard input).",
            exit_code=INVALID,
        )
    return str(typer.prompt(prompt, hide_input=True)).strip()


def _auth_line(view: dict[str, Any]) -> str:
    if view["auth"] == "app":
        return f"GitHub App {view['app_id']}, installation {view['installation_id']}"
    return "token"


def _check_runs_line(view: dict[str, Any]) -> str:
    if not view["check_runs"]:
        return "no"
    return "yes" if view["auth"] == "app" else "yes (made by App connections only: none with a token)"


def _show(view: dict[str, Any]) -> None:
    console.print(
        fields_table(
            [
                ("repository", f"{view['repository']}  {view['repository_url']}"),
                ("api", view["api_url"]),
                ("auth", _auth_line(view)),
                ("pull requests", "yes" if view["pull_requests"] else "no"),
                ("drafts", "yes" if view["drafts"] else "no"),
                ("opt-in label", view["opt_in_label"] or "(none: every pull request)"),
                ("opt-out label", view["opt_out_label"] or "(none)"),
                ("push branches", ", ".join(view["push_branches"]) or "(none)"),
                ("check runs", _check_runs_line(view)),
                ("webhook", f"{view['webhook_url']}  events: {', '.join(view['events'])}"),
                ("verified", view["verified"]),
                ("last error", view["last_error"] or "-"),
            ]
        )
    )


def _print_secret(answer: dict[str, Any]) -> None:
    console.print(
        fields_table(
            [
                ("payload URL", answer["webhook_url"]),
                ("content type", "application/json"),
                ("secret", answer["webhook_secret"]),
                ("events", ", ".join(answer["events"])),
            ]
        )
    )
    console.print(
        "Add these to the repository's webhook (Settings → Webhooks). "
        "[bold]Copy the secret now[/]: envhub will not show it again."
    )


@app.command("connect")
@command
def connect(
    project: ProjectArgument,
    repo: Annotated[str, typer.Option("--repo", "-r", help="The repository, owner/name.")],
    app_id: Annotated[int | None, typer.Option("--app-id", min=1, help="The GitHub App's id.")] = None,
    installation_id: Annotated[
        int | None, typer.Option("--installation-id", min=1, help="The App's installation id.")
    ] = None,
    private_key_file: Annotated[
        str | None, typer.Option("--private-key-file", help="The App's PEM private key (- for stdin).")
    ] = None,
    token_file: Annotated[
        str | None, typer.Option("--token-file", help="A file holding the token (- for stdin).")
    ] = None,
    api_url: Annotated[
        str, typer.Option("--api-url", help="GitHub Enterprise: https://<host>/api/v3.")
    ] = "https://api.github.com",
    server: ServerOption = None,
    output: OutputOption = Format.text,
) -> None:
    """Connect a project to its repository, as a GitHub App installation (--app-id, --installation-id,
    --private-key-file) or with a token (--token-file, else a hidden prompt)."""
    connection = Connection.signed_in(server)
    owner = resources.project(connection, project)
    body: dict[str, Any] = {"repository": repo, "api_url": api_url}
    if app_id is not None or installation_id is not None or private_key_file is not None:
        body |= {
            "auth": "app",
            "app_id": app_id,
            "installation_id": installation_id,
            "private_key": _read_secret(private_key_file, "App private key (PEM)", "--private-key-file"),
        }
    else:
        body |= {"auth": "token", "token": _read_secret(token_file, "GitHub token", "--token-file")}
    answer = connection.request("PUT", f"/api/v1/projects/{owner['id']}/github", json=body)
    if output is Format.json:
        print_json(answer)
        return
    view = answer["connection"]
    visibility = "private" if answer["private"] else "public"
    console.print(
        f"Connected [bold]{owner['name']}[/] to {view['repository']} ({visibility}, "
        f"default branch {answer['default_branch']})."
    )
    if answer["webhook_secret"]:
        _print_secret(answer)
    else:
        console.print(
            "The repository's webhook keeps its secret "
            "(`envhub projects github rotate-secret` makes a new one)."
        )


@app.command("show")
@command
def show(project: ProjectArgument, server: ServerOption = None, output: OutputOption = Format.text) -> None:
    """Show a project's repository connection and pull-request policy (never its credentials)."""
    connection = Connection.signed_in(server)
    owner = resources.project(connection, project)
    view = connection.request("GET", f"/api/v1/projects/{owner['id']}/github")
    if output is Format.json:
        print_json(view)
        return
    _show(view)


@app.command("set")
@command
def set_policy(
    project: ProjectArgument,
    pull_requests: Annotated[
        bool | None,
        typer.Option("--pull-requests/--no-pull-requests", help="Pull requests get environments."),
    ] = None,
    drafts: Annotated[
        bool | None, typer.Option("--drafts/--no-drafts", help="Draft pull requests too.")
    ] = None,
    opt_in_label: Annotated[
        str | None, typer.Option("--opt-in-label", help="Only pull requests with this label ('' for all).")
    ] = None,
    opt_out_label: Annotated[
        str | None, typer.Option("--opt-out-label", help="Never pull requests with this label ('' for none).")
    ] = None,
    push_branch: Annotated[
        list[str] | None,
        typer.Option("--push-branch", help="A branch pattern whose pushes get an environment (repeatable)."),
    ] = None,
    no_push_branches: Annotated[
        bool, typer.Option("--no-push-branches", help="No branch environments on push.")
    ] = False,
    check_runs: Annotated[
        bool | None,
        typer.Option(
            "--check-runs/--no-check-runs",
            help="A check run on each pull request's commit (App connections only).",
        ),
    ] = None,
    server: ServerOption = None,
    output: OutputOption = Format.text,
) -> None:
    """Change which pull requests and pushes get environments, and check runs (options left out stay)."""
    body: dict[str, Any] = {
        key: value
        for key, value in (
            ("pull_requests", pull_requests),
            ("drafts", drafts),
            ("opt_in_label", opt_in_label),
            ("opt_out_label", opt_out_label),
            ("check_runs", check_runs),
        )
        if value is not None
    }
    if push_branch or no_push_branches:
        body["push_branches"] = [] if no_push_branches else list(push_branch or [])
    if not body:
        raise CliError(
            "validation_failed",
            "nothing to change",
            hint="Pass at least one option; see `envhub projects github set --help`.",
            exit_code=INVALID,
        )
    connection = Connection.signed_in(server)
    owner = resources.project(connection, project)
    view = connection.request("PATCH", f"/api/v1/projects/{owner['id']}/github", json=body)
    if output is Format.json:
        print_json(view)
        return
    _show(view)


@app.command("rotate-secret")
@command
def rotate_secret(
    project: ProjectArgument, server: ServerOption = None, output: OutputOption = Format.text
) -> None:
    """Make a new webhook secret (shown once); deliveries signed with the old one are refused."""
    connection = Connection.signed_in(server)
    owner = resources.project(connection, project)
    answer = connection.request("POST", f"/api/v1/projects/{owner['id']}/github/webhook-secret")
    if output is Format.json:
        print_json(answer)
        return
    _print_secret(answer)


@app.command("disconnect")
@command
def disconnect(
    project: ProjectArgument, server: ServerOption = None, output: OutputOption = Format.text
) -> None:
    """Disconnect a project from its repository (its credentials are forgotten)."""
    connection = Connection.signed_in(server)
    owner = resources.project(connection, project)
    answer = connection.request("DELETE", f"/api/v1/projects/{owner['id']}/github")
    if output is Format.json:
        print_json(answer)
        return
    console.print(f"Disconnected {owner['name']} from GitHub.")
