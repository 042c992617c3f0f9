"""A terminal client for tests: speaks the bridge's protocol like the browser does.

It signs in as the browser or the CLI does (``auth``: a session cookie or a
bearer token, see signin.py), acknowledges output as soon as it arrives (a
browser that renders instantly) unless ``auto_ack`` is off, and keeps what it
received so tests can wait for text to appear.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.terminal.signin import Credential


def new_id() -> str:
    return secrets.token_urlsafe(12)


class Term:
    def __init__(
        self,
        base_url: str,
        environment_id: int | str,
        *,
        auth: Credential,
        session: str | None = None,
        client: str | None = None,
        mode: str = "drive",
        cols: int = 80,
        rows: int = 24,
        origin: str | None = "",
        auto_ack: bool = True,
        container: str = "",
    ) -> None:
        self.session = session or new_id()
        self.client = client or new_id()
        query = f"session={self.session}&client={self.client}&mode={mode}&cols={cols}&rows={rows}"
        if container:
            query += f"&container={container}"
        headers = dict(auth.headers)
        if origin is not None:
            headers["Origin"] = origin or base_url
        url = base_url.replace("http", "ws", 1) + f"/ws/terminal/{environment_id}?{query}"
        self.ws: ClientConnection = connect(url, additional_headers=headers, max_size=None, open_timeout=30)
        self.output = bytearray()
        self.received = 0
        self.auto_ack = auto_ack
        self.controls: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self.close_reason = ""

    # -- receiving -----------------------------------------------------------

    def pump(self, timeout: float) -> bool:
        """Handle one message; False on timeout or when the socket closed."""
        try:
            message = self.ws.recv(timeout=timeout)
        except TimeoutError:
            return False
        except ConnectionClosed as exc:
            self.close_code = exc.rcvd.code if exc.rcvd else 1006
            self.close_reason = exc.rcvd.reason if exc.rcvd else ""
            return False
        if isinstance(message, bytes):
            self.output += message
            self.received += len(message)
            if self.auto_ack:
                self.ack()
        else:
            control = json.loads(message)
            self.controls.append(control)
            if control["type"] == "ping":
                self.send_control("pong", seq=control["seq"])
            elif control["type"] == "reset":
                self.output.clear()
        return True

    def wait_for(self, text: str | bytes, timeout: float = 30.0) -> None:
        needle = text.encode() if isinstance(text, str) else text
        deadline = time.monotonic() + timeout
        while needle not in self.output:
            left = deadline - time.monotonic()
            if left <= 0 or (not self.pump(min(left, 1.0)) and self.close_code is not None):
                raise AssertionError(f"{needle!r} did not appear; got …{bytes(self.output[-600:])!r}")

    def wait_control(self, kind: str, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for control in self.controls[seen:]:
                if control["type"] == kind:
                    self.controls.remove(control)
                    return control
            seen = len(self.controls)
            left = deadline - time.monotonic()
            if left <= 0 or (not self.pump(min(left, 1.0)) and self.close_code is not None):
                raise AssertionError(f"no {kind!r} message; got {self.controls}")

    def wait_closed(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while self.close_code is None:
            if time.monotonic() > deadline:
                raise AssertionError("the socket stayed open")
            self.pump(0.5)
        return self.close_code

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.pump(left)

    # -- sending -------------------------------------------------------------

    def type(self, text: str) -> None:
        self.ws.send(text.encode())

    def send_control(self, kind: str, **fields: Any) -> None:
        # On a closed socket the close code arrives with the next read.
        with contextlib.suppress(ConnectionClosed):
            self.ws.send(json.dumps({"type": kind, **fields}))

    def ack(self) -> None:
        self.send_control("ack", bytes=self.received)

    def run(self, command: str, expect: str, timeout: float = 30.0) -> None:
        self.type(command + "\r")
        self.wait_for(expect, timeout)

    def close(self) -> None:
        self.ws.close()
