"""Terminals: who may open, watch and drive a shell, and the audit trail of each session.

The WebSocket bridge (``api/terminal``) moves the bytes; every decision about
people happens here. Opening a shell needs ``environment.shell``; watching
someone else's needs ``environment.watch``; driving after a hand-over needs
``environment.shell`` again. Start, watch, hand-over and end each leave an
AuditEvent on the environment; the end event links the recording.

An open terminal is a long-lived connection, so its authorization is not
settled once at the start: :func:`access_now` answers, again and again, whether
the credential it came with and the person's roles or shares still let it in.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from sqlmodel import Session

from envhub.domain.phases import Phase
from envhub.domain.policy import Action
from envhub.domain.principals import Principal
from envhub.errors import InvalidTransition, NotFound
from envhub.integrations.object_store import ObjectStore
from envhub.models import AuditEvent, Environment, Project
from envhub.runtime.base import ExecSession, Runtime
from envhub.services import activity, jobruns, ports, sleeping
from envhub.services.access import allowed_environment_actions, authorize_environment
from envhub.services.authentication import Caller, still_signed_in
from envhub.services.common import AuditTarget, audit, audited, authorize
from envhub.services.environments import get_environment

TARGET = "environment"
_NO_SHELL = frozenset({Phase.deleting, Phase.deleted})


@dataclass(frozen=True, slots=True)
class ShellAccess:
    """An environment as the terminal bridge needs it, and what the caller may do there."""

    environment_id: int
    label: str  # project/environment
    team_id: int
    may_drive: bool


def _access(session: Session, actor: Principal, environment_id: int, action: Action) -> ShellAccess:
    # Access to one environment: team roles, shares (a shared viewer watches, an
    # editor drives) and agent tokens confined to it all count.
    environment = get_environment(session=session, actor=actor, environment_id=environment_id)
    project = authorize_environment(session, actor, environment, action, what=f"environment {environment_id}")
    allowed = allowed_environment_actions(session, actor, environment, project.team_id)
    return ShellAccess(
        environment_id=environment_id,
        label=f"{project.name}/{environment.name}",
        team_id=project.team_id,
        may_drive=Action.environment_shell in allowed,
    )


@dataclass(frozen=True, slots=True)
class AccessNow:
    """The answer of :func:`access_now`: what the caller may still do, or why nothing."""

    access: ShellAccess | None
    ended: str = ""  # why access ended, said to the person


def access_now(*, session: Session, caller: Caller, environment_id: int, active: bool = False) -> AccessNow:
    """What ``caller`` may still do in the environment's terminals.

    Nothing once the credential no longer holds (signed out; session revoked,
    expired or idle; token revoked or expired) or the person may no longer
    watch there (left the team, role lowered, share expired or revoked, an
    agent token's environment gone). ``active``: the caller typed since the
    last check, which keeps their session from idling. Cheap on purpose (about
    seven small indexed queries) and audit-free: it is asked every few seconds
    for every open terminal, and nothing was done.
    """
    if not still_signed_in(session, caller, active=active):
        what = "session" if caller.via == "session" else "token"
        return AccessNow(None, f"your sign-in ended (the {what} was signed out, revoked or expired)")
    environment = session.get(Environment, environment_id)
    project = session.get(Project, environment.project_id) if environment else None
    if environment is None or project is None or environment.phase is Phase.deleted:
        return AccessNow(None, "the environment is gone")
    allowed = allowed_environment_actions(session, caller.principal, environment, project.team_id)
    if Action.environment_read not in allowed or Action.environment_watch not in allowed:
        return AccessNow(None, "you no longer have access to this environment")
    access = ShellAccess(
        environment_id=environment_id,
        label=f"{project.name}/{environment.name}",
        team_id=project.team_id,
        may_drive=Action.environment_shell in allowed,
    )
    return AccessNow(access)


def open_shell(
    *,
    session: Session,
    actor: Principal,
    runtime: Runtime,
    environment_id: int,
    terminal_id: str,
    container: str | None,
    recording: str,
    command: list[str] | None = None,
) -> tuple[ExecSession, ShellAccess]:
    """Start a login shell (or ``command``, on a terminal) in the environment; record that ``actor`` did."""
    target = AuditTarget(TARGET, id=environment_id)
    with audited(session, actor, "environment.shell.start", target):
        access = _access(session, actor, environment_id, Action.environment_shell)
        target.name, target.team_id = access.label, access.team_id
        environment = session.get(Environment, environment_id)
        assert environment is not None
        if environment.phase in _NO_SHELL or environment.desired_state == "absent":
            raise InvalidTransition(
                f"cannot open a shell in an environment that is {environment.phase.value}"
            )
        activity.note(environment_id)
        sleeping.require_awake(session, actor, environment, ports.queue)
        # Starting the shell can take a while (a pod exec handshake): hold no
        # transaction (and so no SQLite write lock) meanwhile.
        session.commit()
        exec_session = runtime.exec(environment_id, command, container=container)
        target.details = {
            "terminal": terminal_id,
            "container": container or "",
            "recording": recording,
            **({"command": shlex.join(command)[:500]} if command else {}),
        }
    return exec_session, access


def join_shell(
    *, session: Session, actor: Principal, environment_id: int, terminal_id: str, watching: bool
) -> ShellAccess:
    """May ``actor`` attach to a running session? Watching someone else's is audited."""
    target = AuditTarget(TARGET, id=environment_id)
    with audited(session, actor, "environment.shell.watch", target):
        access = _access(session, actor, environment_id, Action.environment_watch)
        target.name, target.team_id = access.label, access.team_id
        target.details = {"terminal": terminal_id}
        target.record = watching  # only watching someone else's session is news
    return access


def hand_over(
    *, session: Session, actor: Principal, environment_id: int, terminal_id: str, to: Principal
) -> None:
    """Record that the driver's seat went to ``to`` (who was checked for ``environment.shell``)."""
    access = _access(session, to, environment_id, Action.environment_shell)
    audit(
        session,
        actor,
        "environment.shell.handover",
        target_type=TARGET,
        target_id=environment_id,
        target=access.label,
        team_id=access.team_id,
        details={"terminal": terminal_id, "to": to.name, "message": f"{actor.name} → {to.name}"},
    )
    session.commit()


def end_shell(
    *,
    session: Session,
    actor: Principal,
    environment_id: int,
    terminal_id: str,
    exit_code: int | None,
    reason: str,
    recording: str,
    duration: float,
    output_bytes: int,
    recording_location: str = "",
) -> AuditEvent:
    """Record the end of a session (``actor`` is whoever opened it), linking its recording.

    ``recording`` is the recording's key (its path in the data folder, and its
    key in the object store); ``recording_location`` names the object store's
    copy (``s3://bucket/key``) when it goes there, so any replica replays it.
    """
    environment = session.get(Environment, environment_id)
    project = session.get(Project, environment.project_id) if environment else None
    details: dict[str, Any] = {
        "terminal": terminal_id,
        "exit_code": exit_code,
        "reason": reason,
        "recording": recording,
        **({"recording_location": recording_location} if recording_location else {}),
        "duration_seconds": round(duration, 1),
        "output_bytes": output_bytes,
        "message": reason + ("" if exit_code is None else f" (exit {exit_code})"),
    }
    event = audit(
        session,
        actor,
        "environment.shell.end",
        target_type=TARGET,
        target_id=environment_id,
        target=f"{project.name}/{environment.name}" if project and environment else "",
        team_id=project.team_id if project else None,
        details=details,
    )
    session.commit()
    # Open environment pages list ended sessions with their recordings: tell them.
    jobruns.announce(environment_id=environment_id)
    return event


def watchable(*, session: Session, actor: Principal, environment_id: int) -> ShellAccess:
    """Authorize listing the environment's running sessions."""
    return _access(session, actor, environment_id, Action.environment_watch)


@dataclass(frozen=True, slots=True)
class StoredRecording:
    """Where a recording can be read: a file on this machine, or an object in the object store."""

    name: str  # a file name for the download
    path: Path | None = None
    key: str = ""  # the object store's key, when ``path`` is None


def find_recording(
    *, session: Session, actor: Principal, event_id: int, data_dir: Path, store: ObjectStore | None
) -> StoredRecording:
    """The recording linked from a terminal AuditEvent, for someone who may read the trail.

    A recording that went to the object store is read from there, by whichever
    replica is asked; until its upload is done, from the data folder of the
    replica that wrote it (the file leaves it once the store holds it).
    ``store`` does network I/O: call this from a thread.
    """
    event = session.get(AuditEvent, event_id)
    details = (event.details or {}) if event else {}
    key = str(details.get("recording") or "")
    if event is None or event.target_type != TARGET or event.target_id is None or not key:
        raise NotFound(f"no recording for event {event_id}")
    environment = session.get(Environment, event.target_id)
    project = session.get(Project, environment.project_id) if environment else None
    if project is None:
        raise NotFound(f"no recording for event {event_id}")
    authorize(session, actor, project.team_id, Action.audit_read, what=f"event {event_id}")
    # The key came from our own audit row; still, never leave the recordings folder.
    relative = PurePosixPath(key)
    if relative.is_absolute() or ".." in relative.parts or relative.parts[:1] != ("recordings",):
        raise NotFound(f"no recording for event {event_id}")
    path = data_dir / relative
    if path.is_file():  # no object store, or its upload is not done yet (and this replica wrote it)
        return StoredRecording(name=relative.name, path=path)
    location = str(details.get("recording_location") or "")
    if location and store is not None and store.location(key) == location and store.size(key) is not None:
        return StoredRecording(name=relative.name, key=key)
    if not location:
        raise NotFound("the recording is no longer stored")
    if store is None or store.location(key) != location:
        raise NotFound(
            f"the recording is in {location}, which is not this envhub's object store",
            hint="Point ENVHUB_OBJECT_STORE_URL and ENVHUB_OBJECT_STORE_BUCKET at the store that holds it.",
        )
    raise NotFound(
        "the recording is not in the object store yet",
        hint="It is uploaded when its session ends (and retried while the object store is down); "
        "try again shortly.",
    )
