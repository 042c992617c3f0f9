"""``envhub login``, ``logout``, ``whoami``: the OAuth device flow (RFC 8628) and the token it gives.

``login`` asks envhub for a device code, shows the short user code and the
page where a signed-in person confirms it (opening the browser when it can),
then polls at the interval envhub asks for and stores the token it receives
(``store.py``). ``logout`` revokes that token on the server, then forgets it.
"""

from __future__ import annotations

import os
import sys
import time
import webbrowser
from typing import Annotated, Any

import httpx
import typer

from envhub.cli import store
from envhub.cli.client import TIMEOUT, USER_AGENT, Connection, error_from, resolve_server, unreachable
from envhub.cli.errors import TIMED_OUT, CliError
from envhub.cli.output import (
    Format,
    OutputOption,
    ServerOption,
    command,
    console,
    err,
    fields_table,
    print_json,
    print_json_line,
)

CLIENT_ID = "envhub-cli"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DEFAULT_SCOPES = "read write shell"


def can_open_browser() -> bool:
    if os.environ.get("CI") or os.environ.get("ENVHUB_NO_BROWSER"):
        return False
    if not sys.stdout.isatty():
        return False
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or sys.platform == "darwin")


def _post_form(http: httpx.Client, path: str, fields: dict[str, str]) -> httpx.Response:
    return http.post(path, data=fields)


def device_login(server: str, *, scopes: str, open_browser: bool, fmt: Format) -> str:
    """Run the device flow against ``server``; the access token."""
    try:
        with httpx.Client(base_url=server, headers={"User-Agent": USER_AGENT}, timeout=TIMEOUT) as http:
            started = _post_form(http, "/auth/device/code", {"client_id": CLIENT_ID, "scope": scopes})
            if started.status_code >= 400:
                raise error_from(started)
            grant: dict[str, Any] = started.json()
            _announce(grant, open_browser=open_browser, fmt=fmt)
            return _poll(http, grant)
    except httpx.HTTPError as exc:
        raise unreachable(server, exc) from exc


def _announce(grant: dict[str, Any], *, open_browser: bool, fmt: Format) -> None:
    complete = str(grant.get("verification_uri_complete") or grant["verification_uri"])
    if fmt is Format.json:
        print_json_line(
            {
                "status": "waiting",
                "user_code": grant["user_code"],
                "verification_uri": grant["verification_uri"],
                "verification_uri_complete": complete,
                "expires_in": grant["expires_in"],
            }
        )
    else:
        err.print(f"Your one-time code: [bold]{grant['user_code']}[/]")
        err.print(f"Confirm it at: {complete}")
    opened = open_browser and can_open_browser() and webbrowser.open(complete)
    if opened and fmt is Format.text:
        err.print("(opened in your browser)")
    sys.stderr.flush()


def _poll(http: httpx.Client, grant: dict[str, Any]) -> str:
    interval = max(1, int(grant.get("interval") or 5))
    deadline = time.monotonic() + int(grant.get("expires_in") or 600)
    fields = {"grant_type": DEVICE_GRANT, "device_code": str(grant["device_code"]), "client_id": CLIENT_ID}
    with err.status("Waiting for you to confirm the code in the browser…"):
        while True:
            time.sleep(interval)
            answer = _post_form(http, "/auth/device/token", fields)
            if answer.status_code == 200:
                return str(answer.json()["access_token"])
            error = error_from(answer)
            if error.code == "authorization_pending":
                pass
            elif error.code == "slow_down":
                interval += 5  # RFC 8628 §3.5
            elif error.code == "access_denied":
                raise CliError(
                    "device_access_denied",
                    "the sign-in was denied in the browser",
                    hint="Run `envhub login` again and approve the code.",
                )
            elif error.code == "expired_token":
                raise CliError(
                    "device_expired_token",
                    "the code expired before it was confirmed",
                    hint="Run `envhub login` again for a new code.",
                )
            else:
                raise error
            if time.monotonic() > deadline:
                raise CliError(
                    "device_expired_token",
                    "the code expired before it was confirmed",
                    hint="Run `envhub login` again for a new code.",
                    exit_code=TIMED_OUT,
                )


@command
def login(
    server: ServerOption = None,
    scopes: Annotated[
        str,
        typer.Option(
            "--scopes", help="Space-separated: read, write, shell, admin, deploy (releases only, for CI)."
        ),
    ] = DEFAULT_SCOPES,
    no_browser: Annotated[bool, typer.Option("--no-browser", help="Only print the address.")] = False,
    output: OutputOption = Format.text,
) -> None:
    """Sign in through the browser (device flow) and keep the token for later commands."""
    target = resolve_server(server)
    token = device_login(target, scopes=scopes, open_browser=not no_browser, fmt=output)
    me = Connection(target, token).request("GET", "/api/v1/me")
    where = store.save(target, token, user=str(me["name"]), token_id=me.get("token_id"))
    if output is Format.json:
        print_json_line(
            {"status": "signed_in", "server": target, "user": me["name"], "token_stored_in": where}
        )
    else:
        console.print(f"Signed in to {target} as [bold]{me['name']}[/].")
        err.print(f"Token stored in {'the OS keyring' if where == 'keyring' else where}.")


@command
def logout(server: ServerOption = None, output: OutputOption = Format.text) -> None:
    """Revoke this machine's token on the server and forget it."""
    target = resolve_server(server)
    if os.environ.get(store.TOKEN_VARIABLE):
        err.print(f"note: {store.TOKEN_VARIABLE} is set; it stays valid (revoke it in the dashboard).")
    saved = store.load(target) if not os.environ.get(store.TOKEN_VARIABLE) else None
    revoked, problem = False, ""
    if saved is not None:
        connection = Connection(target, saved.token)
        try:
            token_id = saved.token_id or connection.request("GET", "/api/v1/me").get("token_id")
            if token_id:
                connection.request("DELETE", f"/api/v1/tokens/{int(token_id)}")
                revoked = True
        except CliError as exc:
            problem = f"{exc.message} ({exc.code})"
    forgotten = store.forget(target)
    if output is Format.json:
        print_json({"server": target, "revoked": revoked, "forgotten": forgotten, "problem": problem})
        return
    if problem:
        err.print(f"warning: the token could not be revoked on the server: {problem}")
    console.print(
        f"Signed out of {target}"
        + (" (token revoked)." if revoked else "." if forgotten else ": nothing was stored.")
    )


@command
def whoami(server: ServerOption = None, output: OutputOption = Format.text) -> None:
    """Who the stored token (or ENVHUB_TOKEN) signs you in as."""
    connection = Connection.signed_in(server)
    me = connection.request("GET", "/api/v1/me")
    me.pop("csrf_token", None)
    me["server"] = connection.server
    if output is Format.json:
        print_json(me)
        return
    console.print(
        fields_table(
            [
                ("user", me["name"]),
                ("server", connection.server),
                ("type", me["type"]),
                ("scopes", " ".join(me["scopes"]) if me.get("scopes") is not None else "all of your roles"),
                ("environment", me.get("environment_id")),
                ("token", me.get("token_id")),
            ]
        )
    )


def register(app: typer.Typer) -> None:
    app.command()(login)
    app.command()(logout)
    app.command()(whoami)
