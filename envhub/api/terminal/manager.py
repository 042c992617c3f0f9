"""Terminal sessions of this web process, keyed by the id the browser generated.

The manager finds or starts the session a socket asks for (through the
service layer, which authorizes and audits), runs the keepalive, the
housekeeping and the access re-check (``access.py``), and remembers recently
ended sessions for a while so that a late reconnect learns how its shell
ended instead of silently getting a new one. Sessions live in memory: with
several web replicas, terminal sockets need sticky routing to the replica that
holds them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from envhub.api.terminal import access, protocol
from envhub.api.terminal.participant import Participant
from envhub.api.terminal.recording import Recorder, recording_key
from envhub.api.terminal.session import SessionInfo, TerminalSession
from envhub.config import get_settings
from envhub.metrics import TERMINAL_SESSIONS
from envhub.models.db import session_scope
from envhub.services import ports
from envhub.services import terminal as terminal_service
from envhub.services.authentication import Caller

log = logging.getLogger(__name__)

TOMBSTONE_SECONDS = 600.0
HOUSEKEEPING_SECONDS = 2.0
# A session quiet for this long with a long unreplayed tail gets its screen
# checkpoint renewed in the background (keeps restores fast and exact).
COMPACT_AFTER_QUIET = 2.0


@dataclass(frozen=True, slots=True)
class Ended:
    environment_id: int
    code: int | None
    reason: str
    at: float


class TerminalManager:
    def __init__(self) -> None:
        self.sessions: dict[str, TerminalSession] = {}
        self.ended: dict[str, Ended] = {}
        self._opening: dict[str, asyncio.Future[TerminalSession]] = {}
        self._ticker: asyncio.Task[None] | None = None
        self._checker: asyncio.Task[None] | None = None

    def _ensure_ticker(self) -> None:
        loop = asyncio.get_running_loop()
        if self._ticker is None or self._ticker.done():
            self._ticker = loop.create_task(self._tick(), name="terminal-keepalive")
        if self._checker is None or self._checker.done():
            self._checker = loop.create_task(self._check_access(), name="terminal-access")

    # -- sessions ------------------------------------------------------------

    def for_environment(self, environment_id: int) -> list[TerminalSession]:
        return [s for s in self.sessions.values() if s.info.environment_id == environment_id and not s.ended]

    async def open(
        self, request: protocol.ConnectRequest, caller: Caller, environment_id: int
    ) -> TerminalSession | None:
        """Start the shell for ``request``.

        None when another socket is already starting (or has started) one
        under this id: that socket's caller was authorized, this one was not
        yet, so it joins through :meth:`opened` and the joiners' checks.
        """
        if request.session in self._opening or request.session in self.sessions:
            return None
        future: asyncio.Future[TerminalSession] = asyncio.get_running_loop().create_future()
        self._opening[request.session] = future
        try:
            session = await self._start(request, caller, environment_id)
            future.set_result(session)
            return session
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: nobody else may be waiting
            raise
        finally:
            self._opening.pop(request.session, None)

    async def opened(self, terminal_id: str) -> TerminalSession | None:
        """The running session under this id, once it has finished opening; None if none."""
        pending = self._opening.get(terminal_id)
        if pending is not None:
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                if pending.cancelled():
                    return None
                raise
            except Exception:
                return None  # it failed to start: the caller may try to start it again
        return self.sessions.get(terminal_id)

    async def _start(
        self, request: protocol.ConnectRequest, caller: Caller, environment_id: int
    ) -> TerminalSession:
        principal = caller.principal
        settings = get_settings()
        started = time.time()
        key = recording_key(environment_id, request.session, started)

        def open_shell() -> tuple[object, terminal_service.ShellAccess]:
            with session_scope() as db:
                return terminal_service.open_shell(
                    session=db,
                    actor=principal,
                    runtime=ports.runtime(),
                    environment_id=environment_id,
                    terminal_id=request.session,
                    container=request.container,
                    recording=key,
                    command=["/bin/sh", "-c", request.command] if request.command else None,
                )

        exec_session, access = await asyncio.to_thread(open_shell)
        recorder = Recorder(
            settings.data_dir / key,
            cols=request.cols,
            rows=request.rows,
            limit_bytes=int(settings.terminal_recording_limit_mb * 1e6),
            title=f"{access.label}{' · ' + request.container if request.container else ''}",
        )
        info = SessionInfo(
            id=request.session,
            environment_id=environment_id,
            environment=access.label,
            team_id=access.team_id,
            container=request.container,
            owner=principal,
            recording_key=key,
            owner_caller=caller,
            started=started,
        )
        session = TerminalSession(
            info,
            exec_session,  # type: ignore[arg-type]
            driver=(principal.user_id, request.client),
            cols=request.cols,
            rows=request.rows,
            recorder=recorder,
            grace=settings.terminal_grace,
            on_end=self._ended,
            on_handover=self._handed_over,
        )
        self.sessions[session.id] = session
        self._ensure_ticker()
        return session

    async def _ended(self, session: TerminalSession, code: int | None, reason: str) -> None:
        self.sessions.pop(session.id, None)
        self.ended[session.id] = Ended(session.info.environment_id, code, reason, time.monotonic())
        info = session.info

        def record() -> None:
            with session_scope() as db:
                terminal_service.end_shell(
                    session=db,
                    actor=info.owner,
                    environment_id=info.environment_id,
                    terminal_id=info.id,
                    exit_code=code,
                    reason=reason,
                    recording=info.recording_key,
                    duration=time.time() - info.started,
                    output_bytes=session.output_bytes,
                )

        await asyncio.to_thread(record)

    async def _handed_over(
        self, session: TerminalSession, previous: Participant, target: Participant
    ) -> None:
        def record() -> None:
            with session_scope() as db:
                terminal_service.hand_over(
                    session=db,
                    actor=previous.principal,
                    environment_id=session.info.environment_id,
                    terminal_id=session.id,
                    to=target.principal,
                )

        try:
            await asyncio.to_thread(record)
        except Exception:
            log.exception("recording the hand-over in terminal %s failed", session.id)

    async def shutdown(self) -> None:
        for session in list(self.sessions.values()):
            await session.end("envhub stopped")
        for task in (self._ticker, self._checker):
            if task is not None:
                task.cancel()

    # -- keepalive and housekeeping ------------------------------------------

    async def _tick(self) -> None:
        last_ping = time.monotonic()
        while True:
            await asyncio.sleep(HOUSEKEEPING_SECONDS)
            interval = get_settings().terminal_ping_interval
            now = time.monotonic()
            ping = now - last_ping >= interval
            if ping:
                last_ping = now
            for session in list(self.sessions.values()):
                try:
                    self._keepalive(session, now, interval, ping)
                    self._housekeep(session, now)
                except Exception:
                    log.exception("terminal housekeeping failed for %s", session.id)
            for key in [k for k, e in self.ended.items() if now - e.at > TOMBSTONE_SECONDS]:
                del self.ended[key]

    async def _check_access(self) -> None:
        """Re-check everyone on this process's terminals; close what access no longer covers."""
        since = time.monotonic()
        while True:
            await asyncio.sleep(get_settings().terminal_access_check_interval)
            started = time.monotonic()
            try:
                checks = access.gather(self.sessions.values(), since)
                answers = await asyncio.to_thread(access.ask, checks) if checks else {}
                unused = [s for s in list(self.sessions.values()) if not s.ended and access.apply(s, answers)]
                reason = "access ended: no one who may use this shell is left"
                await asyncio.gather(*(session.end(reason) for session in unused))
            except Exception:
                log.exception("re-checking terminal access failed")
            since = started

    @staticmethod
    def _keepalive(session: TerminalSession, now: float, interval: float, ping: bool) -> None:
        for participant in list(session.participants.values()):
            if now - participant.last_seen > 3 * interval:
                participant.close(protocol.CloseCode.timeout, "no keepalive answer")
                session.detach(participant)
            elif ping:
                participant.control(protocol.encode("ping", seq=int(now * 1000)))

    @staticmethod
    def _housekeep(session: TerminalSession, now: float) -> None:
        screen = session.screen
        if screen.pending > screen.keep and now - session.last_output > COMPACT_AFTER_QUIET:
            session.compact()


manager = TerminalManager()
# Read at scrape time: the open shells are the manager's, so the figure cannot drift from them.
TERMINAL_SESSIONS.set_function(lambda: len(manager.sessions))
