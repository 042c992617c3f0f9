"""``envhub shell``: the environment's terminal in yours, over the dashboard's WebSocket.

The same bridge as the browser's xterm (``api/terminal/protocol.py``):
keystrokes go up as binary frames, output comes down as binary frames, the
rest is small JSON. The local terminal is put in raw mode so every key
(Ctrl-C, arrows, Tab) reaches the remote shell; its size follows SIGWINCH.
Output is acknowledged as it is written, which is the server's flow control.

A dropped connection is not the end: the session outlives its socket for a
grace period, so the client reconnects with the same session and seat ids and
the server redraws the screen. When the remote shell ends, the server says how
(``exit`` with its code), and that code is this command's exit status.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import sys
import termios
import threading
import tty
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import typer
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from envhub.cli import resources
from envhub.cli.client import USER_AGENT, Connection, unreachable
from envhub.cli.errors import REMOTE_FAILURE, CliError
from envhub.cli.output import Format, OutputOption, ServerOption, command
from envhub.cli.resources import EnvArgument

# Close codes after which reconnecting cannot help (api/terminal/protocol.py's CloseCode).
FINAL_CLOSES = {
    4400: "bad_request",
    4401: "unauthenticated",
    4403: "forbidden",
    4404: "not_found",
    4409: "replaced",
    4410: "access_ended",
}
CLEAR_SCREEN = b"\x1b[H\x1b[2J"


def socket_url(server: str, environment_id: int, query: dict[str, str]) -> str:
    parts = urlsplit(server)
    scheme = "wss" if parts.scheme == "https" else "ws"
    path = f"{parts.path.rstrip('/')}/ws/terminal/{environment_id}"
    return urlunsplit((scheme, parts.netloc, path, urlencode(query), ""))


def terminal_size() -> tuple[int, int]:
    """The local terminal's size as the kernel knows it (not $COLUMNS, which does not follow resizes)."""
    for stream in (sys.stdin, sys.stdout):
        with contextlib.suppress(OSError, ValueError):
            size = os.get_terminal_size(stream.fileno())
            return size.columns, size.lines
    fallback = shutil.get_terminal_size((80, 24))
    return fallback.columns, fallback.lines


def exit_status(code: int | None) -> int:
    if code is None:
        return REMOTE_FAILURE
    return 128 - code if code < 0 else code  # killed by a signal: 128 + its number, as shells say


@dataclass
class Outcome:
    """How one socket ended."""

    exit_code: int | None = None
    exited: bool = False
    reason: str = ""
    error: dict[str, Any] = field(default_factory=dict)


class ShellClient:
    def __init__(
        self,
        connection: Connection,
        environment_id: int,
        *,
        container: str | None,
        command: str | None,
        reconnect_for: float,
    ) -> None:
        self.connection = connection
        self.environment_id = environment_id
        self.container = container
        self.command = command
        self.reconnect_for = reconnect_for
        self.session_id = secrets.token_urlsafe(18)
        self.client_id = secrets.token_urlsafe(12)
        self.stdin_fd = sys.stdin.fileno()
        self.stdout_fd = sys.stdout.fileno()
        self.interactive = os.isatty(self.stdin_fd)
        self.attached_before = False
        self._outbox: asyncio.Queue[bytes | str] = asyncio.Queue()
        self._stdin_open = True

    # -- the local terminal ------------------------------------------------

    def _say(self, text: str) -> None:
        os.write(sys.stderr.fileno(), f"\r\n[envhub] {text}\r\n".encode())

    def _write_out(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self.stdout_fd, view)
            view = view[written:]

    def _on_stdin(self) -> None:
        try:
            data = os.read(self.stdin_fd, 65536)
        except OSError:
            data = b""
        if not data:
            # Piped input ended: stop reading, and let the remote command finish.
            asyncio.get_running_loop().remove_reader(self.stdin_fd)
            self._stdin_open = False
            return
        self._outbox.put_nowait(data)

    def _read_file_input(self, loop: asyncio.AbstractEventLoop) -> None:
        while data := os.read(self.stdin_fd, 65536):
            loop.call_soon_threadsafe(self._outbox.put_nowait, data)

    def _on_resize(self) -> None:
        cols, rows = terminal_size()
        self._outbox.put_nowait(json.dumps({"type": "resize", "cols": cols, "rows": rows}))

    # -- one socket --------------------------------------------------------

    def _url(self) -> str:
        cols, rows = terminal_size()
        query = {
            "session": self.session_id,
            "client": self.client_id,
            "mode": "drive",
            "cols": str(cols),
            "rows": str(rows),
        }
        if self.container:
            query["container"] = self.container
        if self.command:
            query["command"] = self.command
        return socket_url(self.connection.server, self.environment_id, query)

    async def _send_loop(self, ws: ClientConnection) -> None:
        while True:
            message = await self._outbox.get()
            await ws.send(message)

    async def _attach(self, ws: ClientConnection) -> Outcome:
        outcome = Outcome()
        received = 0
        sender = asyncio.ensure_future(self._send_loop(ws))
        try:
            async for message in ws:
                if isinstance(message, bytes):
                    self._write_out(message)
                    received += len(message)
                    await ws.send(json.dumps({"type": "ack", "bytes": received}))
                    continue
                event = json.loads(message)
                kind = event.get("type")
                if kind == "reset":
                    if self.attached_before and self.interactive:
                        self._write_out(CLEAR_SCREEN)
                    self.attached_before = True
                elif kind == "ping":
                    await ws.send(json.dumps({"type": "pong", "seq": event.get("seq")}))
                elif kind == "exit":
                    outcome.exited, outcome.exit_code = True, event.get("code")
                    outcome.reason = str(event.get("reason") or "")
                elif kind == "error":
                    outcome.error = event
                elif kind == "role" and not event.get("may_drive", True):
                    self._say("you may only watch this terminal now")
        except ConnectionClosed:
            pass
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        close = ws.close_code
        if not outcome.exited and close in FINAL_CLOSES:
            outcome.error = outcome.error or {"code": FINAL_CLOSES[close], "message": ws.close_reason or ""}
        return outcome

    async def _connect(self) -> ClientConnection:
        return await connect(
            self._url(),
            additional_headers=self.connection.headers(),
            user_agent_header=USER_AGENT,
            max_size=8 * 1024 * 1024,
            open_timeout=30,
        )

    # -- the whole session -------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        try:
            loop.add_reader(self.stdin_fd, self._on_stdin)
        except PermissionError:  # a regular file or /dev/null cannot be polled: read it in a thread
            threading.Thread(target=self._read_file_input, args=(loop,), daemon=True).start()
        if self.interactive:
            loop.add_signal_handler(signal.SIGWINCH, self._on_resize)
        try:
            return await self._session()
        finally:
            with contextlib.suppress(Exception):
                loop.remove_reader(self.stdin_fd)
            if self.interactive:
                loop.remove_signal_handler(signal.SIGWINCH)

    async def _session(self) -> int:
        lost_at: float | None = None
        delay = 0.25
        loop = asyncio.get_running_loop()
        while True:
            try:
                ws = await self._connect()
            except InvalidStatus as exc:
                raise CliError(
                    "terminal_refused",
                    f"envhub refused the terminal connection (HTTP {exc.response.status_code})",
                    exit_code=REMOTE_FAILURE,
                ) from exc
            except (OSError, InvalidHandshake, TimeoutError) as exc:
                if lost_at is None:
                    raise _remote(unreachable(self.connection.server, exc)) from exc
                if loop.time() - lost_at > self.reconnect_for:
                    raise CliError(
                        "connection_lost",
                        f"the connection to {self.connection.server} was lost and did not come back",
                        hint="The shell keeps running for a while: run the same command to start a new one.",
                        exit_code=REMOTE_FAILURE,
                    ) from exc
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if lost_at is not None:
                self._say("reconnected")
            lost_at, delay = None, 0.25
            async with ws:
                outcome = await self._attach(ws)
            if outcome.exited:
                if outcome.exit_code is None and outcome.reason and self.interactive:
                    self._say(outcome.reason)
                return exit_status(outcome.exit_code)
            if outcome.error:
                code = str(outcome.error.get("code") or "terminal_error")
                raise CliError(
                    code,
                    str(outcome.error.get("message") or "the terminal was closed"),
                    hint=_hint(code),
                    exit_code=REMOTE_FAILURE,
                )
            lost_at = loop.time()
            self._say("connection lost; reconnecting…")


def _hint(code: str) -> str:
    return {
        "unauthenticated": "Sign in again with `envhub login`.",
        "access_ended": "Your sign-in or access ended; sign in again or ask for access.",
        "not_found": "Check the environment id (the dashboard shows it in the address).",
        "forbidden": "Opening a shell needs the shell scope and a member's (or an editor's) role.",
        "not_ready": "The environment is not running yet: wait until it is ready.",
    }.get(code, "")


def _remote(error: CliError) -> CliError:
    error.exit_code = REMOTE_FAILURE
    return error


def run_shell(
    connection: Connection,
    environment_id: int,
    *,
    container: str | None,
    command: str | None,
    reconnect_for: float,
) -> int:
    client = ShellClient(
        connection, environment_id, container=container, command=command, reconnect_for=reconnect_for
    )
    saved = termios.tcgetattr(client.stdin_fd) if client.interactive else None
    try:
        if saved is not None:
            # TCSANOW, not setraw's default TCSAFLUSH: keep what was typed ahead.
            tty.setraw(client.stdin_fd, termios.TCSANOW)
        return asyncio.run(client.run())
    finally:
        if saved is not None:
            termios.tcsetattr(client.stdin_fd, termios.TCSADRAIN, saved)


@command
def shell(
    env: EnvArgument,
    container: Annotated[
        str | None, typer.Option("--container", help="Which container (default: the first).")
    ] = None,
    cmd: Annotated[
        str | None, typer.Option("-c", "--command", help="Run this (with /bin/sh -c) instead of a shell.")
    ] = None,
    reconnect_for: Annotated[
        float, typer.Option(help="Seconds to keep reconnecting after the connection drops.")
    ] = 300.0,
    server: ServerOption = None,
    output: OutputOption = Format.text,
) -> None:
    """Open a terminal in an environment; exits with the remote shell's status."""
    try:
        connection = Connection.signed_in(server)
        environment_id = resources.environment_id(connection, env)
    except CliError as exc:
        raise _remote(exc) from None
    status = run_shell(
        connection, environment_id, container=container, command=cmd, reconnect_for=reconnect_for
    )
    raise typer.Exit(status)


def register(app: typer.Typer) -> None:
    app.command()(shell)
