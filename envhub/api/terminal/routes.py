"""HTTP and WebSocket routes of the terminal.

``/ws/terminal/{environment_id}?session=&client=&mode=drive|watch&container=&cols=&rows=&command=``
is the bridge (see ``protocol.py`` for what flows over it; ``command``, optional,
runs with ``/bin/sh -c`` instead of a login shell). Before anything
else the socket's Origin must be the dashboard's own, then the caller must be
signed in (``caller_from_scope``), then the service layer decides what they
may do: every socket, including one that names a session another socket is
still opening, or one that has ended. Refusals close the socket with a 44xx
code the browser can show. The decision is not final: ``access.py`` re-checks
it while the socket stays open.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, FastAPI, Path, Request, WebSocket
from fastapi.responses import FileResponse, Response, StreamingResponse
from pydantic import BaseModel
from starlette.types import Scope
from starlette.websockets import WebSocketDisconnect

from envhub.api.auth import caller_from_scope, principal_from_scope
from envhub.api.terminal import protocol, relay
from envhub.api.terminal.manager import manager
from envhub.api.terminal.participant import Participant
from envhub.api.terminal.protocol import CloseCode
from envhub.api.terminal.session import TerminalSession
from envhub.api.v1.models import answers, streamed
from envhub.config import get_settings
from envhub.domain.principals import Principal
from envhub.errors import EnvhubError, Unauthenticated
from envhub.models.db import session_scope
from envhub.queue.base import TerminalOwner
from envhub.services import ports
from envhub.services import terminal as terminal_service
from envhub.services.authentication import Caller

log = logging.getLogger(__name__)

_LOOPBACK = {"localhost", "127.0.0.1", "::1"}
# How long a socket keeps asking for a session whose opening other sockets
# started and failed (each such try is someone else's: an unauthorized peer's
# fails at once and must not use up the authorized caller's chances).
_JOIN_PATIENCE = 60.0
_ASCIICAST = "application/x-asciicast"


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return ""


def origin_allowed(scope: Scope) -> bool:
    """The dashboard's own origin: ``ENVHUB_BASE_URL``'s, or the Host the socket came to.

    The request's Host counts only for loopback names or the configured host
    name: accepting any Host that matches its Origin would let a DNS-rebinding
    page (evil.example resolving to 127.0.0.1) in. Clients without an Origin
    are not browsers (the CLI) and authenticate with a token instead.
    """
    origin = _header(scope, b"origin").rstrip("/").lower()
    if not origin:
        return True
    base = urlsplit(get_settings().base_url)
    if origin == f"{base.scheme}://{base.netloc}".lower():
        return True
    host = _header(scope, b"host").lower()
    hostname = urlsplit(f"//{host}").hostname or ""
    if hostname not in _LOOPBACK and hostname != (base.hostname or "").lower():
        return False
    scheme = "https" if scope.get("scheme") in ("https", "wss") else "http"
    return origin == f"{scheme}://{host}"


_CLOSE_CODES = {401: CloseCode.unauthenticated, 403: CloseCode.forbidden, 404: CloseCode.not_found}


def _close_code(exc: EnvhubError) -> CloseCode:
    """The WebSocket close code for the error's HTTP status (from the registry in errors.py)."""
    return _CLOSE_CODES.get(exc.status, CloseCode.bad_request if exc.status < 500 else CloseCode.unavailable)


async def _refuse(websocket: WebSocket, code: CloseCode, message: str, error: str = "") -> None:
    await websocket.send_text(protocol.encode("error", code=error or code.name, message=message))
    await websocket.close(code, message[:120])


async def _join(
    websocket: WebSocket, request: protocol.ConnectRequest, caller: Caller, environment_id: int
) -> tuple[TerminalSession, bool] | TerminalOwner | None:
    """The session the socket asks for and whether this caller may drive it, or the replica holding it."""
    deadline = time.monotonic() + _JOIN_PATIENCE
    while time.monotonic() < deadline:  # a session another socket failed to open may be tried again
        existing = await manager.opened(request.session)
        if existing is not None:
            if existing.info.environment_id != environment_id:
                # ids are per environment; never reveal another one's session
                await _refuse(websocket, CloseCode.not_found, "no such terminal session")
                return None
            return existing, await _may_join(existing, request, caller.principal, environment_id)
        ended = await manager.ended(request.session)
        if ended is not None and ended.environment_id == environment_id:
            await _authorize(terminal_service.watchable, caller.principal, environment_id)
            await websocket.send_text(protocol.encode("exit", code=ended.code, reason=ended.reason))
            await websocket.close(CloseCode.normal, "session ended")
            return None
        if request.watch:
            await _refuse(websocket, CloseCode.not_found, "that terminal session is not running")
            return None
        opened = await manager.open(request, caller, environment_id)
        if isinstance(opened, TerminalOwner):
            return opened
        if opened is not None:
            return opened, True
    await _refuse(websocket, CloseCode.unavailable, "the shell could not be started; try again")
    return None


async def _authorize(check: Callable[..., object], principal: Principal, environment_id: int) -> None:
    def run() -> None:
        with session_scope() as db:
            check(session=db, actor=principal, environment_id=environment_id)

    await asyncio.to_thread(run)


async def _may_join(
    existing: TerminalSession, request: protocol.ConnectRequest, principal: Principal, environment_id: int
) -> bool:
    """Authorize joining a running session (raises); whether the caller may drive it."""
    is_owner_seat = existing.driver == (principal.user_id, request.client)

    def check() -> terminal_service.ShellAccess:
        with session_scope() as db:
            return terminal_service.join_shell(
                session=db,
                actor=principal,
                environment_id=environment_id,
                terminal_id=request.session,
                watching=not is_owner_seat,
            )

    access = await asyncio.to_thread(check)
    return access.may_drive


async def terminal_socket(websocket: WebSocket, environment_id: str) -> None:
    """A browser's (or the CLI's) socket: served here, or relayed to the replica holding its session."""
    await websocket.accept()
    if not origin_allowed(websocket.scope):
        await _refuse(websocket, CloseCode.forbidden, "this origin may not open terminals", "bad_origin")
        return
    try:
        request = protocol.parse_connect(dict(websocket.query_params))
        environment = protocol.parse_id(environment_id)
    except protocol.ProtocolError as exc:
        await _refuse(websocket, CloseCode.bad_request, str(exc))
        return
    if manager.stopping:
        await _refuse(websocket, CloseCode.restarting, "envhub is restarting; reconnecting", "restarting")
        return
    try:
        owner = await manager.locate(request.session)
        if owner is not None:
            try:
                await relay.forward(websocket, owner.address, environment)
                return
            except relay.OwnerUnreachable:
                await manager.lost(request.session, owner)
    except Exception:
        log.exception("routing terminal %s failed", request.session)
        await _refuse(websocket, CloseCode.unavailable, "the terminal cannot be reached; try again")
        return
    await _serve(websocket, request, environment, relayed=False)


async def relayed_socket(websocket: WebSocket, environment_id: str) -> None:
    """A socket another web replica relays here because this one holds (or is to hold) its session."""
    client = relay.verify(websocket.scope)
    await websocket.accept()
    if client is None:
        await _refuse(websocket, CloseCode.forbidden, "not a relay from an envhub web replica", "bad_relay")
        return
    websocket.scope["client"] = (client, 0)  # who is calling, for sign-in checks and the audit trail
    try:
        request = protocol.parse_connect(dict(websocket.query_params))
        environment = protocol.parse_id(environment_id)
    except protocol.ProtocolError as exc:
        await _refuse(websocket, CloseCode.bad_request, str(exc))
        return
    await _serve(websocket, request, environment, relayed=True)


async def _serve(
    websocket: WebSocket, request: protocol.ConnectRequest, environment_id: int, *, relayed: bool
) -> None:
    caller = await asyncio.to_thread(caller_from_scope, websocket.scope)
    if caller is None:
        await _refuse(websocket, CloseCode.unauthenticated, "sign in to open a terminal")
        return
    try:
        joined = await _join(websocket, request, caller, environment_id)
        if isinstance(joined, TerminalOwner):
            # Another replica started this session a moment ago; a relayed socket is not relayed on.
            if not relayed:
                await relay.forward(websocket, joined.address, environment_id)
                return
            raise relay.OwnerUnreachable(joined.address)
    except relay.OwnerUnreachable:
        await _refuse(websocket, CloseCode.unavailable, "the terminal is moving; try again", "unavailable")
        return
    except EnvhubError as exc:
        await _refuse(websocket, _close_code(exc), exc.message, exc.code)
        return
    except Exception:
        log.exception("opening terminal %s failed", request.session)
        await _refuse(websocket, CloseCode.unavailable, "the shell could not be started", "runtime_error")
        return
    if joined is None:
        return
    session, may_drive = joined
    participant = Participant(client=request.client, caller=caller, may_drive=may_drive, channel=websocket)
    session.attach(participant)
    manager.changed(session)
    receiving = asyncio.ensure_future(_receive(websocket, session, participant))
    watched = {receiving} | ({participant.done} if participant.done else set())
    try:
        # Until the peer goes, or the server has closed the socket (access
        # ended, replaced, silent): a peer that keeps it open is not waited for.
        await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
    finally:
        receiving.cancel()
        session.detach(participant)
        manager.changed(session)
    if receiving.done() and not receiving.cancelled():
        receiving.result()  # an unexpected error in the loop is raised, not lost


async def _receive(websocket: WebSocket, session: TerminalSession, participant: Participant) -> None:
    while not participant.gone:
        try:
            message = await websocket.receive()
        except (WebSocketDisconnect, RuntimeError):
            return
        if message["type"] == "websocket.disconnect":
            return
        data = message.get("bytes")
        if data is not None:
            session.input(participant, data)
            continue
        text = message.get("text")
        if text is None:
            continue
        try:
            session.control(participant, protocol.parse_control(text))
        except (protocol.ProtocolError, ValueError, TypeError) as exc:
            participant.control(protocol.encode("error", code="bad_message", message=str(exc)))


# -- REST ----------------------------------------------------------------------


async def _principal(request: Request) -> Principal:
    principal = await asyncio.to_thread(principal_from_scope, request.scope)
    if principal is None:
        raise Unauthenticated("sign in, or send 'Authorization: Bearer <token>'")
    return principal


router = APIRouter()


# Database ids are 32-bit: a larger number is a bad request, not a database error.
Id = Annotated[int, Path(ge=1, le=protocol.MAX_ID)]


class TerminalParticipant(BaseModel):
    name: str
    role: str  # driver | viewer


class TerminalSessionOut(BaseModel):
    id: str
    owner: str
    container: str
    started: float
    age_seconds: int
    cols: int
    rows: int
    participants: list[TerminalParticipant]


class TerminalSessions(BaseModel):
    sessions: list[TerminalSessionOut]


@router.get(
    "/api/v1/environments/{environment_id}/terminals",
    response_model=TerminalSessions,
    responses=answers(404),
    tags=["terminals"],
    summary="Running terminal sessions of an environment",
)
async def list_terminals(environment_id: Id, request: Request) -> dict[str, Any]:
    """Running terminal sessions of an environment, on every web replica, for people who may watch them."""
    principal = await _principal(request)

    await _authorize(terminal_service.watchable, principal, environment_id)
    now = time.time()
    sessions = [
        {
            "id": s.id,
            "owner": s.owner,
            "container": s.container,
            "started": s.started,
            "age_seconds": round(now - s.started),
            "cols": s.cols,
            "rows": s.rows,
            "participants": [{"name": name, "role": role} for name, role in s.participants],
        }
        for s in await manager.listing(environment_id)
    ]
    return {"sessions": sessions}


@router.get(
    "/api/v1/terminal/recordings/{event_id}",
    response_class=FileResponse,
    responses=streamed(_ASCIICAST, "The recording (asciicast v2).", 404),
    tags=["terminals"],
    summary="The recording of a terminal session, linked from its audit event",
)
async def recording(event_id: Id, request: Request) -> Response:
    """The asciicast recording linked from a terminal AuditEvent (from the object store if it went there)."""
    principal = await _principal(request)
    store = ports.object_store()

    def find() -> terminal_service.StoredRecording:
        with session_scope() as db:
            return terminal_service.find_recording(
                session=db, actor=principal, event_id=event_id, data_dir=get_settings().data_dir, store=store
            )

    found = await asyncio.to_thread(find)
    if found.path is not None:
        return FileResponse(found.path, media_type=_ASCIICAST, filename=found.name)
    assert store is not None
    # Read in threads (the first request here, then each chunk, by Starlette): never on the loop.
    chunks = await asyncio.to_thread(store.read, found.key)
    disposition = f'attachment; filename="{found.name}"'
    return StreamingResponse(chunks, media_type=_ASCIICAST, headers={"Content-Disposition": disposition})


def mount(api: FastAPI) -> None:
    api.include_router(router)
    api.add_api_websocket_route("/ws/terminal/{environment_id}", terminal_socket)
    api.add_api_websocket_route(relay.PATH + "{environment_id}", relayed_socket)
