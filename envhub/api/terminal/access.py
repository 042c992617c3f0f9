"""A shell ends when access ends: the people on open terminals are re-checked every few seconds.

Every ``ENVHUB_TERMINAL_ACCESS_CHECK_INTERVAL`` seconds each web process asks
the service layer, in one worker thread and one database session, for every
distinct (credential, environment) among its terminals: does the session
cookie or token still hold, and do the person's roles or shares still let
them watch (and drive)? A socket whose answer is no is closed with
``access_ended``; a driver who may now only watch stops driving; a session
that no one may use any more ends.

Why a poll of the database rather than a notification from the services
that change access: it works unchanged with any number of web replicas (each
checks only the sockets it holds, against the shared source of truth), and it
also catches the ends nobody announces: a share or token reaching its expiry,
a session going idle or past its maximum age, an OpenID provider dropping
someone at the periodic re-check. Its price is about seven small indexed
queries per distinct (credential, environment) per interval, and a delay of
at most one interval (plus the time the round takes).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from envhub.api.terminal.session import CredentialKey, TerminalSession, credential_key
from envhub.models.db import session_scope
from envhub.services import terminal as terminal_service
from envhub.services.authentication import Caller
from envhub.services.terminal import AccessNow

log = logging.getLogger(__name__)

Key = tuple[CredentialKey, int]  # (credential, environment id)


@dataclass(frozen=True, slots=True)
class Check:
    caller: Caller
    environment_id: int
    active: bool  # typed since the previous round


def gather(sessions: Iterable[TerminalSession], since: float) -> dict[Key, Check]:
    """What to ask this round: each participant's and keeper's credential, once per environment."""
    checks: dict[Key, Check] = {}
    for session in sessions:
        environment_id = session.info.environment_id
        for participant in session.participants.values():
            key = (credential_key(participant.caller), environment_id)
            active = participant.last_input >= since or (key in checks and checks[key].active)
            checks[key] = Check(participant.caller, environment_id, active)
        for credential, caller in session.keepers.items():
            checks.setdefault((credential, environment_id), Check(caller, environment_id, False))
    return checks


def ask(checks: dict[Key, Check]) -> dict[Key, AccessNow]:
    """The answers (blocking: run it in a worker thread). A check that fails to run is left out."""
    answers: dict[Key, AccessNow] = {}
    with session_scope() as db:
        for key, check in checks.items():
            try:
                answers[key] = terminal_service.access_now(
                    session=db, caller=check.caller, environment_id=check.environment_id, active=check.active
                )
            except Exception:  # the database hiccuped: keep the socket, ask again next round
                log.exception("re-checking terminal access failed")
                db.rollback()
            db.commit()  # end the read: on SQLite an open transaction holds the write lock
    return answers


def apply(session: TerminalSession, answers: dict[Key, AccessNow]) -> bool:
    """Act on this round's answers; True when no one may use the session any more."""
    environment_id = session.info.environment_id
    for participant in list(session.participants.values()):
        answer = answers.get((credential_key(participant.caller), environment_id))
        if answer is None:
            continue  # attached during the round, or not answered: next round
        if answer.access is None:
            log.info("terminal %s: %s's access ended (%s)", session.id, participant.name, answer.ended)
            session.access_ended(participant, answer.ended)
        elif not answer.access.may_drive:
            session.may_only_watch(participant)
    for credential in list(session.keepers):
        answer = answers.get((credential, environment_id))
        if answer is not None and (answer.access is None or not answer.access.may_drive):
            del session.keepers[credential]
    return not session.keepers
