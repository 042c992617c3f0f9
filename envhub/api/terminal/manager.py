"""Terminal sessions of this web process, keyed by the id the browser generated.

The manager finds or starts the session a socket asks for (through the
service layer, which authorizes and audits), runs the keepalive, the
housekeeping and the access re-check (``access.py``).

Several web replicas share a registry (``queue/terminals.py``, in Redis):
each session id names the replica holding it, by its internal address. A
replica claims an id atomically before starting its shell, so of two
replicas starting the same id at once only one does; the other relays its
socket to the winner (``relay.py``), as does any replica a socket for that
session lands on. The owner refreshes its entries while it runs, so a replica
that died stops being named within :data:`OWNER_TTL`. The owner also
publishes what each environment's list of running sessions shows (who is on
it, since when), so every replica answers that list for all of them. How a session ended
stays in the registry for :data:`TOMBSTONE_SECONDS`, so a late reconnect,
wherever it lands, learns how its shell ended instead of silently getting a
new one. A replica that stops ends its shells, telling everyone on them that
envhub is restarting.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time

from envhub.api.terminal import access, protocol
from envhub.api.terminal.archive import Archive
from envhub.api.terminal.participant import CLOSE_TIMEOUT, Participant
from envhub.api.terminal.recording import Recorder, recording_key
from envhub.api.terminal.session import SessionInfo, TerminalSession
from envhub.config import get_settings
from envhub.metrics import TERMINAL_SESSIONS
from envhub.models.db import session_scope
from envhub.queue.base import TerminalEnd, TerminalOwner, TerminalRegistry, TerminalSummary
from envhub.services import ports
from envhub.services import terminal as terminal_service
from envhub.services.authentication import Caller

log = logging.getLogger(__name__)

TOMBSTONE_SECONDS = 600.0
HOUSEKEEPING_SECONDS = 2.0
# A registry entry lives this long unless its owner refreshes it (every REFRESH_SECONDS).
OWNER_TTL = 30.0
REFRESH_SECONDS = 10.0
RESTARTING = "envhub is restarting: this shell ended"
LOST = "the envhub web replica holding this shell stopped unexpectedly"
# A stopping process waits this long for recordings still uploading (the rest stay on its disk).
UPLOAD_ON_STOP_SECONDS = 10.0
# A session quiet for this long with a long unreplayed tail gets its screen
# checkpoint renewed in the background (keeps restores fast and exact).
COMPACT_AFTER_QUIET = 2.0


class TerminalManager:
    def __init__(self) -> None:
        self.sessions: dict[str, TerminalSession] = {}
        # This run of the process: a restart at the same address is another owner.
        self.instance = secrets.token_hex(8)
        self._opening: dict[str, asyncio.Future[TerminalSession]] = {}
        self._claims: dict[str, TerminalOwner] = {}  # registry entries this process holds
        self._published: dict[str, TerminalSummary] = {}  # what the registry lists of them
        self._publishing: set[asyncio.Task[None]] = set()
        self.stopping = False
        self._ticker: asyncio.Task[None] | None = None
        self._checker: asyncio.Task[None] | None = None
        self.archive = Archive()  # recordings on their way to the object store

    def _ensure_ticker(self) -> None:
        loop = asyncio.get_running_loop()
        if self._ticker is None or self._ticker.done():
            self._ticker = loop.create_task(self._tick(), name="terminal-keepalive")
        if self._checker is None or self._checker.done():
            self._checker = loop.create_task(self._check_access(), name="terminal-access")

    # -- the registry --------------------------------------------------------

    @property
    def registry(self) -> TerminalRegistry:
        return ports.terminals()

    def _me(self, environment_id: int) -> TerminalOwner:
        return TerminalOwner(get_settings().internal_address, self.instance, environment_id)

    async def locate(self, terminal_id: str) -> TerminalOwner | None:
        """The replica holding ``terminal_id`` when it is another one; None when it is this one or none."""
        if terminal_id in self.sessions or terminal_id in self._opening:
            return None
        owner = await self.registry.owner(terminal_id)
        if owner is None or owner.address != get_settings().internal_address:
            return owner
        # This address, but not a session of this process: an earlier run's (or a leftover).
        await self.registry.release(terminal_id, owner)
        return None

    async def ended(self, terminal_id: str) -> TerminalEnd | None:
        """How the session ended, on whichever replica, if it ended recently."""
        return await self.registry.ended(terminal_id)

    async def lost(self, terminal_id: str, owner: TerminalOwner) -> None:
        """``owner`` cannot be reached: its process is gone, and the session with it."""
        log.warning("terminal %s: its replica %s is unreachable: taken as ended", terminal_id, owner.address)
        ended = TerminalEnd(owner.environment_id, None, LOST)
        await self.registry.end(terminal_id, owner, ended, TOMBSTONE_SECONDS)

    async def _claim(self, terminal_id: str, environment_id: int) -> TerminalOwner | None:
        """Register this process as the session's owner; the other replica holding it, if one does."""
        me = self._me(environment_id)
        for _ in range(3):
            holder = await self.registry.claim(terminal_id, me, OWNER_TTL)
            if holder is None:
                self._claims[terminal_id] = me
                return None
            if holder.address != me.address:
                return holder
            await self.registry.release(terminal_id, holder)  # this address's earlier run
        raise RuntimeError(f"terminal {terminal_id}: could not claim its registry entry")

    async def _release(self, terminal_id: str) -> None:
        claim = self._claims.pop(terminal_id, None)
        if claim is not None:
            try:
                await self.registry.release(terminal_id, claim)
            except Exception:
                log.exception("releasing terminal %s in the registry failed", terminal_id)

    # -- sessions ------------------------------------------------------------

    def for_environment(self, environment_id: int) -> list[TerminalSession]:
        return [s for s in self.sessions.values() if s.info.environment_id == environment_id and not s.ended]

    @staticmethod
    def summary(session: TerminalSession) -> TerminalSummary:
        """What the environment's list of running sessions shows of ``session``."""
        return TerminalSummary(
            id=session.id,
            owner=session.info.owner.name,
            container=session.info.container or "",
            started=session.info.started,
            cols=session.size[0],
            rows=session.size[1],
            participants=tuple(
                (p.name, "driver" if session.is_driver(p) else "viewer")
                for p in session.participants.values()
            ),
        )

    async def listing(self, environment_id: int) -> list[TerminalSummary]:
        """The environment's running sessions on every replica, oldest first.

        This process's own as they are now; the others' as their replicas last
        published them (every :data:`HOUSEKEEPING_SECONDS` when they change).
        Without the registry, this process's own only (and the error is logged).
        """
        found: dict[str, TerminalSummary] = {}
        try:
            found = {s.id: s for s in await self.registry.listed(environment_id)}
        except Exception:
            log.exception("listing environment %s's terminals in the registry failed", environment_id)
        found.update((s.id, self.summary(s)) for s in self.for_environment(environment_id))
        return sorted(found.values(), key=lambda s: (s.started, s.id))

    def changed(self, session: TerminalSession) -> None:
        """Someone joined or left ``session``: the other replicas' lists learn it now, not next tick."""
        if session.ended or session.id not in self._claims:
            return
        task = asyncio.get_running_loop().create_task(self._publish([session], every=False))
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)

    async def _publish(self, sessions: list[TerminalSession], *, every: bool) -> None:
        """Publish the summaries of ``sessions`` that changed since last time (``every``: all of them)."""
        entries = []
        for session in sessions:
            claim = self._claims.get(session.id)
            summary = self.summary(session)
            if claim is not None and (every or self._published.get(session.id) != summary):
                entries.append((claim, summary))
        if not entries:
            return
        try:
            await self.registry.publish(entries, OWNER_TTL)
        except Exception:
            log.exception("publishing this process's terminals in the registry failed")
            return
        for _, summary in entries:
            self._published[summary.id] = summary

    async def open(
        self, request: protocol.ConnectRequest, caller: Caller, environment_id: int
    ) -> TerminalSession | TerminalOwner | None:
        """Start the shell for ``request``, or name the replica that already holds it.

        None when another socket of this process is already starting (or has
        started) one under this id: that socket's caller was authorized, this
        one was not yet, so it joins through :meth:`opened` and the joiners' checks.
        """
        if request.session in self._opening or request.session in self.sessions:
            return None
        future: asyncio.Future[TerminalSession] = asyncio.get_running_loop().create_future()
        self._opening[request.session] = future
        try:
            holder = await self._claim(request.session, environment_id)
            if holder is not None:
                future.cancel()  # sockets waiting here ask again, and are sent to the holder
                return holder
            session = await self._start(request, caller, environment_id)
            future.set_result(session)
            await self._publish([session], every=True)  # listed on every replica from now on
            return session
        except asyncio.CancelledError:
            future.cancel()
            await self._release(request.session)
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: nobody else may be waiting
            await self._release(request.session)
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
        self._published.pop(session.id, None)
        info = session.info
        store = ports.object_store()
        location = ""
        if store is not None:  # the recording is closed: it goes to the object store
            location = store.location(info.recording_key)
            self.archive.upload(store, info.recording_key, session.recorder.path)
        claim = self._claims.pop(session.id, None) or self._me(info.environment_id)
        try:
            ended = TerminalEnd(info.environment_id, code, reason)
            await self.registry.end(session.id, claim, ended, TOMBSTONE_SECONDS)
        except Exception:
            log.exception("recording the end of terminal %s in the registry failed", session.id)

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
                    recording_location=location,
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
        """The process is stopping: end every shell, telling everyone on it that envhub is restarting.

        From now on this process starts no shell: a socket for a new one is sent
        to reconnect, and lands on another replica."""
        self.stopping = True
        sessions = list(self.sessions.values())
        senders = [p.done for s in sessions for p in s.participants.values() if p.done is not None]
        await asyncio.gather(*(s.end(RESTARTING, restarting=True) for s in sessions), return_exceptions=True)
        if senders:  # the exit message and the close frame reach every socket before the process goes
            await asyncio.wait(senders, timeout=CLOSE_TIMEOUT)
        await self.archive.drain(UPLOAD_ON_STOP_SECONDS)
        for task in (self._ticker, self._checker):
            if task is not None:
                task.cancel()

    # -- keepalive and housekeeping ------------------------------------------

    async def _tick(self) -> None:
        last_ping = last_refresh = time.monotonic()
        while True:
            await asyncio.sleep(HOUSEKEEPING_SECONDS)
            interval = get_settings().terminal_ping_interval
            now = time.monotonic()
            ping = now - last_ping >= interval
            if ping:
                last_ping = now
            refresh = now - last_refresh >= REFRESH_SECONDS
            if refresh:
                last_refresh = now
                try:
                    await self.registry.refresh(dict(self._claims), OWNER_TTL)
                except Exception:
                    log.exception("refreshing this process's terminals in the registry failed")
            # Who is on each session changes at any time: the others' lists learn it within a tick.
            await self._publish([s for s in self.sessions.values() if not s.ended], every=refresh)
            for session in list(self.sessions.values()):
                try:
                    self._keepalive(session, now, interval, ping)
                    self._housekeep(session, now)
                except Exception:
                    log.exception("terminal housekeeping failed for %s", session.id)

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
