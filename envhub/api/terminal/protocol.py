"""The terminal WebSocket's wire format.

Terminal bytes travel as binary frames, unchanged: output from the server,
keystrokes from the driver. Everything else is a small JSON text frame with a
``type``. Text and binary frames share one ordered stream, so a ``reset``
followed by binary frames is "clear the terminal, then draw this screen".

Client → server: ``resize`` {cols, rows} · ``ack`` {bytes: output bytes the
terminal has rendered on this socket, cumulative} · ``ping``/``pong`` {seq} ·
``handover`` {to: participant id} · ``take`` (drive when the driver is gone) ·
``close`` (end the shell).

Server → client: ``hello`` · ``reset`` {cols, rows} · ``size`` {cols, rows} ·
``presence`` {participants} · ``role`` · ``ping``/``pong`` · ``exit`` {code,
reason, restarting} · ``error`` {code, message} (then the socket closes with a code below).

``exit`` with ``restarting`` true: the envhub process holding the shell is
stopping (an upgrade, a scale-down), so the shell ended; the socket closes
with ``going_away`` (1001). Any other ``exit`` closes with ``normal``.

A client that is not a browser (``envhub shell``) speaks the same protocol; it
may name a ``command`` in the query to run instead of the login shell, and
learns the remote exit status from ``exit``.

``access_ended`` (4410) closes a socket whose person may no longer be there:
signed out, session or token revoked or expired, share expired or revoked,
removed from the team. The browser shows "Access ended" and does not
reconnect; a new sign-in starts over.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

MIN_COLS, MAX_COLS = 2, 1000
MIN_ROWS, MAX_ROWS = 1, 500
DEFAULT_SIZE = (80, 24)
_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
# Control messages are tiny; anything bigger is a confused or hostile client.
MAX_CONTROL_BYTES = 4096
# Database ids are 32-bit: anything else in the path is a bad request, not a query.
MAX_ID = 2**31 - 1
MAX_COMMAND = 4096


class CloseCode(IntEnum):
    normal = 1000
    going_away = 1001  # the envhub process holding the shell is stopping (after ``exit``)
    restarting = 1012  # a relaying replica is stopping: reconnect (the shell is still there)
    bad_request = 4400
    unauthenticated = 4401
    forbidden = 4403  # not allowed, or a foreign Origin
    not_found = 4404
    timeout = 4408  # missed keepalives
    replaced = 4409  # the same browser tab connected again
    access_ended = 4410  # the person's sign-in or access ended while connected
    unavailable = 4503  # the environment cannot run a shell right now


class ProtocolError(ValueError):
    """A message the server will not act on."""


@dataclass(frozen=True, slots=True)
class ConnectRequest:
    """What the client asks for in the socket's query string."""

    session: str
    client: str
    watch: bool
    container: str | None
    cols: int
    rows: int
    # A command to run instead of the login shell (``envhub shell -c``); None: the shell.
    command: str | None = None


def clamp_size(cols: Any, rows: Any) -> tuple[int, int]:
    try:
        c, r = int(cols), int(rows)
    except (TypeError, ValueError) as exc:
        raise ProtocolError("cols and rows must be integers") from exc
    return max(MIN_COLS, min(MAX_COLS, c)), max(MIN_ROWS, min(MAX_ROWS, r))


def parse_id(raw: str) -> int:
    """The environment id in the socket's path."""
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 10 and 1 <= int(raw) <= MAX_ID):
        raise ProtocolError(f"the environment id must be a number from 1 to {MAX_ID}")
    return int(raw)


def parse_connect(query: dict[str, str]) -> ConnectRequest:
    session, client = query.get("session", ""), query.get("client", "")
    if not _ID.fullmatch(session) or not _ID.fullmatch(client):
        raise ProtocolError("session and client must be 8-64 characters of A-Z a-z 0-9 _ -")
    mode = query.get("mode", "drive")
    if mode not in ("drive", "watch"):
        raise ProtocolError("mode must be drive or watch")
    container = query.get("container") or None
    if container is not None and not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", container):
        raise ProtocolError("container is not a valid name")
    cols, rows = clamp_size(query.get("cols", DEFAULT_SIZE[0]), query.get("rows", DEFAULT_SIZE[1]))
    command = query.get("command") or None
    if command is not None and (len(command) > MAX_COMMAND or "\x00" in command):
        raise ProtocolError(f"command must be at most {MAX_COMMAND} characters, without NUL")
    return ConnectRequest(session, client, mode == "watch", container, cols, rows, command)


def parse_control(text: str) -> dict[str, Any]:
    if len(text) > MAX_CONTROL_BYTES:
        raise ProtocolError("control message too large")
    try:
        message = json.loads(text)
    except ValueError as exc:
        raise ProtocolError("control messages are JSON") from exc
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError("control messages are objects with a type")
    return message


def encode(kind: str, **fields: Any) -> str:
    return json.dumps({"type": kind, **fields}, separators=(",", ":"))
