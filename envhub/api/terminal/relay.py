"""The hop between web replicas: a terminal socket relayed to the replica holding its session.

A socket that lands on a replica not holding its session (the registry names
another, see ``manager.py``) is connected to that replica's internal address
at ``/internal/ws/terminal/<environment id>`` with the same query, and frames
are passed both ways as they are, close codes included. The owner
authenticates the caller from the forwarded cookie or bearer token and the
service layer authorizes and audits there, once, as for a socket of its own.

The hop is trusted only with a signature: ``X-Envhub-Relay`` carries a
timestamp, the caller's address (the owner would otherwise see the relaying
replica's) and an HMAC over both and the path with its query, keyed by a key
derived from ``ENVHUB_SECRET_KEY``, which every replica shares. A request
without a valid, fresh signature is refused; a captured one is good for one
session's path for :data:`MAX_AGE` seconds. The relaying replica has already
checked the Origin; a relayed socket is never relayed again.

A relaying replica that stops closes its relayed sockets with ``restarting``
(1012): the browser reconnects, lands on another replica and is relayed to the
same shell. When the owner vanishes without a close (it crashed), the browser
gets the same code, and its reconnect learns that the shell is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import time
from dataclasses import dataclass, field

from starlette.types import Scope
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from envhub.api.clients import client_ip, header
from envhub.api.terminal.protocol import CloseCode
from envhub.config import get_settings

log = logging.getLogger(__name__)

PATH = "/internal/ws/terminal/"
HEADER = "X-Envhub-Relay"
MAX_AGE = 30
CONNECT_TIMEOUT = 5.0
# What the owner needs to know who is calling, and nothing else.
_FORWARDED = (b"cookie", b"authorization", b"user-agent")
# Codes a peer reports but nobody may send.
_UNSENDABLE = {1005, 1006, 1015}


class OwnerUnreachable(Exception):
    """The replica named as the session's owner did not answer at its address."""


def _mac(stamp: str, client: str, target: str) -> str:
    key = get_settings().derived_key("terminal-relay")
    return hmac.new(key, f"{stamp}\n{client}\n{target}".encode(), hashlib.sha256).hexdigest()


def sign(target: str, client: str, now: float | None = None) -> str:
    """The relay header for ``target`` (path and query) on behalf of the caller at ``client``."""
    stamp = str(int(time.time() if now is None else now))
    return f"{stamp} {client or '-'} {_mac(stamp, client or '-', target)}"


def verify(scope: Scope) -> str | None:
    """The caller's address when the relay header is valid and fresh; None otherwise."""
    parts = (header(scope, HEADER.lower().encode()) or "").split(" ")
    if len(parts) != 3 or not parts[0].isdigit():
        return None
    stamp, client, mac = parts
    if abs(time.time() - int(stamp)) > MAX_AGE:
        return None
    target = f"{scope.get('path', '')}?{bytes(scope.get('query_string', b'')).decode('latin-1')}"
    if not hmac.compare_digest(mac, _mac(stamp, client, target)):
        return None
    return "" if client == "-" else client


@dataclass(eq=False)
class _Hop:
    browser: WebSocket
    owner: ClientConnection
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    stopping: bool = False  # this replica is stopping: the browser is told to reconnect
    done: asyncio.Event = field(default_factory=asyncio.Event)


_hops: set[_Hop] = set()


async def forward(websocket: WebSocket, address: str, environment_id: int) -> None:
    """Relay the accepted ``websocket`` to the replica at ``address`` until either side closes.

    Raises :class:`OwnerUnreachable` when that replica does not answer (nothing
    has been sent to the browser then); a replica that answers but refuses the
    hop (a bad signature, an overload) gets the browser a ``restarting`` close.
    """
    scope = websocket.scope
    target = f"{PATH}{environment_id}?{bytes(scope.get('query_string', b'')).decode('latin-1')}"
    headers = {HEADER: sign(target, client_ip(scope))}
    for name in _FORWARDED:
        if value := header(scope, name):
            headers[name.decode()] = value
    url = address.replace("http", "ws", 1) + target
    try:
        owner = await connect(
            url,
            additional_headers=headers,
            open_timeout=CONNECT_TIMEOUT,
            max_size=None,  # the owner is trusted; a screen restore may be large
            compression=None,  # terminal output on an internal network: CPU matters more
            user_agent_header=None,
        )
    except (OSError, TimeoutError) as exc:
        raise OwnerUnreachable(f"{address}: {exc}") from exc
    except InvalidHandshake as exc:
        log.warning("relaying a terminal to %s was refused: %s", address, exc)
        await _close(websocket, CloseCode.restarting, "the terminal's server is unavailable; reconnecting")
        return
    hop = _Hop(websocket, owner)
    _hops.add(hop)
    try:
        hop.tasks = {asyncio.ensure_future(_to_browser(hop)), asyncio.ensure_future(_to_owner(hop))}
        await asyncio.wait(hop.tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in hop.tasks:
            task.cancel()
        await asyncio.gather(*hop.tasks, return_exceptions=True)
    finally:
        _hops.discard(hop)
        if hop.stopping:
            await _close(websocket, CloseCode.restarting, "envhub is restarting; reconnecting")
        await owner.close()
        hop.done.set()


async def _to_browser(hop: _Hop) -> None:
    try:
        async for message in hop.owner:
            if isinstance(message, bytes):
                await hop.browser.send_bytes(message)
            else:
                await hop.browser.send_text(message)
    except ConnectionClosed:
        pass
    except (WebSocketDisconnect, RuntimeError):
        return  # the browser went while we were sending
    received = hop.owner.protocol.close_rcvd
    if received is None:  # the owner vanished without a close: it crashed or lost the network
        await _close(hop.browser, CloseCode.restarting, "the terminal's server went away; reconnecting")
    else:
        code = CloseCode.normal if received.code in _UNSENDABLE else received.code
        await _close(hop.browser, code, received.reason)


async def _to_owner(hop: _Hop) -> None:
    while True:
        try:
            message = await hop.browser.receive()
        except (WebSocketDisconnect, RuntimeError):
            message = {"type": "websocket.disconnect", "code": 1000}
        if message["type"] == "websocket.disconnect":
            code = int(message.get("code") or 1000)
            await hop.owner.close(1000 if code in _UNSENDABLE else code)
            return
        data = message.get("bytes")
        text = message.get("text")
        try:
            if data is not None:
                await hop.owner.send(data)
            elif text is not None:
                await hop.owner.send(text)
        except ConnectionClosed:
            return


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):
        await websocket.close(code, reason[:120])


async def shutdown() -> None:
    """This replica is stopping: its relayed sockets reconnect through another one."""
    hops = list(_hops)
    for hop in hops:
        hop.stopping = True
        for task in hop.tasks:
            task.cancel()
    if hops:
        await asyncio.wait([asyncio.ensure_future(hop.done.wait()) for hop in hops], timeout=CONNECT_TIMEOUT)
