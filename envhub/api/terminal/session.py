"""One shell and everyone looking at it.

A session owns the exec stream (through its pump), the screen log, the
recording and its participants. It outlives its sockets: with nobody attached
the shell keeps running (its reading rate-limited, so an unwatched ``yes``
costs little) until the grace period ends it.

Flow control, per socket: output is queued to every participant that keeps
up. A socket with more than :data:`HIGH_WATER` bytes not yet rendered by its
browser is *lagging*: it gets no live output until it has caught up below
:data:`LOW_WATER`, then its screen is restored from the screen log. So a slow
viewer never slows the driver. Only when every socket is over the mark does
the session stop reading the exec stream (the process then blocks on its
own output, as it would on a slow real terminal), and it resumes as soon as
one drops below the low mark.

Who may use it is re-checked while it runs (``manager``): a participant whose
access ended is closed with ``access_ended``, one who may only watch now
stops driving, and ``keepers`` (everyone who attached able to drive) shrinks
to those who still may; when no keeper is left, nobody may use the shell and
it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from envhub.api.terminal import protocol
from envhub.api.terminal.participant import Participant
from envhub.api.terminal.pump import Pump, make_pump
from envhub.api.terminal.recording import COALESCE_SECONDS, Recorder
from envhub.api.terminal.screenlog import ScreenLog
from envhub.domain.principals import Principal
from envhub.metrics import TERMINAL_BYTES
from envhub.runtime.base import ExecSession
from envhub.services import activity
from envhub.services.authentication import Caller

log = logging.getLogger(__name__)
_INPUT_BYTES = TERMINAL_BYTES.labels(direction="input")
_OUTPUT_BYTES = TERMINAL_BYTES.labels(direction="output")

HIGH_WATER = 512 * 1024
LOW_WATER = 128 * 1024
# Unwatched sessions read at most this fast (bytes per second).
DETACHED_RATE = 1024 * 1024
# A lagging socket is redrawn at most this often.
RESTORE_INTERVAL = 0.5


CredentialKey = tuple[str, str | int | None]


def credential_key(caller: Caller) -> CredentialKey:
    """One browser session or one token: what is re-checked."""
    if caller.via == "session":
        return ("session", caller.session_hash)
    return ("token", caller.principal.token_id)


@dataclass
class SessionInfo:
    """What the manager and the audit trail know about a session."""

    id: str
    environment_id: int
    environment: str
    team_id: int | None
    container: str | None
    owner: Principal
    recording_key: str
    owner_caller: Caller  # the credential it was opened with
    started: float = field(default_factory=time.time)


EndHook = Callable[["TerminalSession", int | None, str], Awaitable[None]]
HandoverHook = Callable[["TerminalSession", Participant, Participant], Awaitable[None]]


class TerminalSession:
    def __init__(
        self,
        info: SessionInfo,
        exec_session: ExecSession,
        *,
        driver: tuple[int | None, str],
        cols: int,
        rows: int,
        recorder: Recorder,
        grace: float,
        on_end: EndHook,
        on_handover: HandoverHook,
    ) -> None:
        self.info = info
        self.exec = exec_session
        self.driver = driver  # (user id, client id) of the seat that may type
        self.size = (cols, rows)
        self.screen = ScreenLog(cols, rows)
        self.recorder = recorder
        self.grace = grace
        self.participants: dict[str, Participant] = {}
        # Credentials that attached able to drive and may come back within the grace period.
        self.keepers: dict[CredentialKey, Caller] = {credential_key(info.owner_caller): info.owner_caller}
        self.ended = False
        self.exit_code: int | None = None
        self.output_bytes = 0
        self.last_output = time.monotonic()
        self._on_end = on_end
        self._on_handover = on_handover
        self._loop = asyncio.get_running_loop()
        self._restore_lock = asyncio.Lock()
        self._grace_timer: asyncio.TimerHandle | None = None
        self._flush_timer: asyncio.TimerHandle | None = None
        self._throttle_timer: asyncio.TimerHandle | None = None
        self._tokens = float(DETACHED_RATE)
        self._tokens_at = time.monotonic()
        self._tasks: set[asyncio.Task[None]] = set()
        exec_session.resize(cols, rows)
        self.pump: Pump = make_pump(exec_session, self._loop, on_output=self._output, on_end=self._eof)
        self.pump.start()
        self._arm_grace()

    @property
    def id(self) -> str:
        return self.info.id

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- participants --------------------------------------------------------

    def is_driver(self, participant: Participant) -> bool:
        return participant.may_drive and self.driver == _seat(participant)

    def driver_present(self) -> bool:
        return any(self.is_driver(p) for p in self.participants.values())

    def attach(self, participant: Participant) -> None:
        for other in list(self.participants.values()):
            if _seat(other) == _seat(participant):
                other.close(protocol.CloseCode.replaced, "replaced by a newer connection")
                self.participants.pop(other.id, None)
        self.participants[participant.id] = participant
        if participant.may_drive:
            self.keepers[credential_key(participant.caller)] = participant.caller
        if self._grace_timer is not None:
            self._grace_timer.cancel()
            self._grace_timer = None
        participant.start()
        self._spawn(self.restore(participant, first=True))
        self.broadcast_presence()

    def detach(self, participant: Participant) -> None:
        if self.participants.pop(participant.id, None) is None:
            return
        self._spawn(participant.stop())
        self.broadcast_presence()
        self._flow()
        if not self.participants:
            self._arm_grace()

    def access_ended(self, participant: Participant, message: str) -> None:
        """Close ``participant``'s socket now: their sign-in or access ended."""
        participant.may_drive = False
        participant.close(
            protocol.CloseCode.access_ended,
            "access ended",
            last=protocol.encode("error", code="access_ended", message=message),
        )
        self.detach(participant)

    def may_only_watch(self, participant: Participant) -> None:
        """``participant`` keeps watching but may no longer type (their role was lowered)."""
        if not participant.may_drive:
            return
        participant.may_drive = False
        participant.control(protocol.encode("role", role="viewer", may_drive=False))
        self.broadcast_presence()

    def _arm_grace(self) -> None:
        if not self.participants and not self.ended and self._grace_timer is None:
            self._grace_timer = self._loop.call_later(
                self.grace, lambda: self._spawn(self.end("the grace period after the last disconnect ended"))
            )

    def _hello(self, participant: Participant) -> str:
        return protocol.encode(
            "hello",
            session=self.id,
            you=participant.id,
            role="driver" if self.is_driver(participant) else "viewer",
            may_drive=participant.may_drive,
            cols=self.size[0],
            rows=self.size[1],
            container=self.info.container or "",
            environment=self.info.environment,
        )

    async def restore(self, participant: Participant, *, first: bool = False) -> None:
        """Send ``participant`` the screen as it is now, then live output from there."""
        async with self._restore_lock:
            if participant.id not in self.participants or self.ended:
                return
            participant.discard_output()
            participant.held = True
            frozen = self.screen.freeze()
            try:
                screen = await asyncio.to_thread(frozen.render)
            except Exception:
                log.exception("restoring the screen of terminal %s failed", self.id)
                screen = b""
            self.screen.settle(screen)
        head = [self._hello(participant)] if first else []
        head.append(protocol.encode("reset", cols=self.size[0], rows=self.size[1]))
        participant.restore(head, screen)

    def compact(self) -> None:
        """Fold the screen log's tail into a new checkpoint in the background."""
        if not self._restore_lock.locked():
            self._spawn(self._compact())

    async def _compact(self) -> None:
        async with self._restore_lock:
            frozen = self.screen.freeze()
            try:
                self.screen.settle(await asyncio.to_thread(frozen.render))
            except Exception:
                log.exception("compacting the screen of terminal %s failed", self.id)

    def broadcast_presence(self) -> None:
        people = [
            {
                "id": p.id,
                "name": p.name,
                "role": "driver" if self.is_driver(p) else "viewer",
                "may_drive": p.may_drive,
            }
            for p in self.participants.values()
        ]
        message = protocol.encode("presence", participants=people, driver_present=self.driver_present())
        for participant in self.participants.values():
            participant.control(message)

    # -- from the browser ----------------------------------------------------

    def input(self, participant: Participant, data: bytes) -> None:
        participant.last_seen = time.monotonic()
        if self.is_driver(participant) and not self.ended and self._attached(participant):
            participant.last_input = participant.last_seen
            self.pump.write(data)
            _INPUT_BYTES.inc(len(data))
            activity.note(self.info.environment_id)  # typing keeps it awake (a write now and then)

    def _attached(self, participant: Participant) -> bool:
        # A socket closed by the server (access ended, replaced) may still be
        # read from until its peer goes: it is heard no more.
        return self.participants.get(participant.id) is participant

    def control(self, participant: Participant, message: dict[str, object]) -> None:
        if not self._attached(participant):
            return
        participant.last_seen = time.monotonic()
        kind = message["type"]
        if kind == "ack":
            participant.ack(int(message.get("bytes", 0)))  # type: ignore[call-overload]
            self._flow()
            if participant.lagging and participant.unacked < LOW_WATER:
                self._schedule_restore(participant)
        elif kind == "ping":
            participant.control(protocol.encode("pong", seq=message.get("seq")))
        elif kind == "resize" and self.is_driver(participant):
            self.resize(*protocol.clamp_size(message.get("cols"), message.get("rows")))
        elif kind == "handover" and self.is_driver(participant):
            target = self.participants.get(str(message.get("to", "")))
            if target is not None and target.may_drive and target is not participant:
                self._give_wheel(participant, target)
        elif kind == "take" and participant.may_drive and not self.driver_present():
            self._give_wheel(None, participant)
        elif kind == "close" and self.is_driver(participant):
            self._spawn(self.end(f"closed by {participant.name}"))

    def _give_wheel(self, previous: Participant | None, target: Participant) -> None:
        self.driver = _seat(target)
        for participant in self.participants.values():
            role = "driver" if self.is_driver(participant) else "viewer"
            participant.control(protocol.encode("role", role=role, may_drive=participant.may_drive))
        self.broadcast_presence()
        self._spawn(self._on_handover(self, previous or target, target))

    def resize(self, cols: int, rows: int) -> None:
        if (cols, rows) == self.size or self.ended:
            return
        self.size = (cols, rows)
        self.pump.resize(cols, rows)
        self.screen.resize(cols, rows)
        self.recorder.resize(cols, rows)
        message = protocol.encode("size", cols=cols, rows=rows)
        for participant in self.participants.values():
            participant.control(message)

    # -- from the shell ------------------------------------------------------

    def _output(self, data: bytes) -> None:
        self.output_bytes += len(data)
        _OUTPUT_BYTES.inc(len(data))
        self.last_output = time.monotonic()
        self.screen.write(data)
        self.recorder.output(data)
        if self._flush_timer is None:
            self._flush_timer = self._loop.call_later(COALESCE_SECONDS * 2, self._flush_recording)
        if not self.participants:
            self._throttle(len(data))
            return
        for participant in self.participants.values():
            if participant.lagging:
                continue
            participant.output(data)
            if participant.unacked > HIGH_WATER and self._others_keep_up(participant):
                participant.lagging = True
        self._flow()

    def _others_keep_up(self, participant: Participant) -> bool:
        return any(
            p is not participant and not p.lagging and p.unacked <= HIGH_WATER
            for p in self.participants.values()
        )

    def _flow(self) -> None:
        """Read while some socket keeps up; pause when all are over the high mark."""
        if self.ended or self._throttle_timer is not None:
            return
        live = [p for p in self.participants.values() if not p.lagging]
        if live and all(p.unacked > HIGH_WATER for p in live):
            if not self.pump.paused:
                self.pump.pause()
        elif self.pump.paused and (not live or any(p.unacked < LOW_WATER for p in live)):
            self.pump.resume()

    def _throttle(self, size: int) -> None:
        now = time.monotonic()
        self._tokens = min(float(DETACHED_RATE), self._tokens + (now - self._tokens_at) * DETACHED_RATE)
        self._tokens_at = now
        self._tokens -= size
        if self._tokens < 0 and self._throttle_timer is None:
            self.pump.pause()
            self._throttle_timer = self._loop.call_later(-self._tokens / DETACHED_RATE, self._unthrottle)

    def _unthrottle(self) -> None:
        self._throttle_timer = None
        if self.pump.paused:
            self.pump.resume()
        self._flow()

    def _schedule_restore(self, participant: Participant) -> None:
        wait = participant.last_restore + RESTORE_INTERVAL - time.monotonic()
        if wait <= 0:
            self._spawn(self.restore(participant))
        else:
            self._loop.call_later(wait, lambda: self._spawn(self.restore(participant)))

    def _flush_recording(self) -> None:
        self._flush_timer = None
        self.recorder.flush()

    def _eof(self) -> None:
        self._spawn(self.end("the shell exited"))

    # -- ending --------------------------------------------------------------

    async def end(self, reason: str, *, restarting: bool = False) -> None:
        """Stop the process, tell everyone, close the recording. Idempotent.

        ``restarting``: envhub itself is stopping; the sockets close with
        ``going_away`` and the exit message says so.
        """
        if self.ended:
            return
        self.ended = True
        for timer in (self._grace_timer, self._flush_timer, self._throttle_timer):
            if timer is not None:
                timer.cancel()
        self.pump.stop()
        code = await asyncio.to_thread(self.exec.wait, 0.5)
        if code is None:
            await asyncio.to_thread(self.exec.close)
            code = await asyncio.to_thread(self.exec.wait, 2.0)
        else:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.exec.close)
        self.exit_code = code
        self.recorder.marker(reason)
        self.recorder.close()
        message = protocol.encode("exit", code=code, reason=reason, restarting=restarting)
        close = protocol.CloseCode.going_away if restarting else protocol.CloseCode.normal
        for participant in self.participants.values():
            participant.control(message)
            participant.close(close, "envhub is restarting" if restarting else "session ended", drain=True)
        try:
            await self._on_end(self, code, reason)
        except Exception:
            log.exception("recording the end of terminal %s failed", self.id)


def _seat(participant: Participant) -> tuple[int | None, str]:
    """Who sits where: one person in one browser tab."""
    return participant.principal.user_id, participant.client
