"""The reconciler's idleness pass: idle development environments sleep, expired ones go.

One query reads the few columns :mod:`envhub.domain.idleness` decides from, for
every development environment that could sleep or expire (its project sets an
idle time or a TTL, it is not pinned); only those with a verdict are loaded and
acted on, so a pass over thousands of environments costs one query and a loop.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import or_
from sqlalchemy import select as sa_select
from sqlmodel import Session, col

from envhub.domain.idleness import Idleness, Verdict, expires_at, verdict
from envhub.domain.phases import Phase
from envhub.domain.principals import SYSTEM
from envhub.domain.specs import EnvironmentKind
from envhub.errors import EnvhubError
from envhub.models import Environment, Project
from envhub.queue.base import JobQueue
from envhub.services import environments, sleeping
from envhub.services.common import audit

log = logging.getLogger(__name__)

_CANDIDATE_PHASES = (Phase.ready, Phase.sleeping, Phase.failed)


@dataclass(slots=True)
class IdleReport:
    checked: int = 0
    slept: list[int] = field(default_factory=list)
    expired: list[int] = field(default_factory=list)


def candidates(session: Session) -> list[Idleness]:
    """Every environment that may sleep or expire, as the decision needs it (one query)."""
    rows = session.execute(
        sa_select(
            col(Environment.id),
            col(Environment.phase),
            col(Environment.kind),
            col(Environment.trigger),
            col(Environment.pinned),
            col(Environment.created_at),
            col(Environment.last_active_at),
            col(Project.sleep_after_minutes),
            col(Project.ttl_hours),
        )
        .join(Project, col(Project.id) == col(Environment.project_id))
        .where(
            col(Environment.phase).in_(_CANDIDATE_PHASES),
            col(Environment.kind) == EnvironmentKind.development,
            col(Environment.pinned).is_(False),
            col(Environment.desired_state) == "present",
            or_(col(Project.sleep_after_minutes) > 0, col(Project.ttl_hours) > 0),
        )
    )
    return [Idleness(*row) for row in rows]


def verdicts(
    facts: list[Idleness], now: datetime, busy: Collection[int] = ()
) -> list[tuple[Idleness, Verdict]]:
    """What to do now, leaving alone the environments a run is working on (``busy``)."""
    found = []
    for one in facts:
        if one.id in busy:
            continue
        decided = verdict(one, now)
        if decided is not None:
            found.append((one, decided))
    return found


def drive(*, session: Session, queue: JobQueue, now: datetime, busy: Collection[int] = ()) -> IdleReport:
    facts = candidates(session)
    report = IdleReport(checked=len(facts))
    for one, decided in verdicts(facts, now, busy):
        try:
            if decided is Verdict.sleep:
                sleeping.sleep_environment(
                    session=session, actor=SYSTEM, queue=queue, environment_id=one.id, reason="idle"
                )
                report.slept.append(one.id)
            else:
                _expire(session, queue, one)
                report.expired.append(one.id)
        except EnvhubError as exc:  # moved on meanwhile (a person redeployed it): looked at next pass
            session.rollback()
            log.info("idleness: environment %s left as it is: %s", one.id, exc.message)
    return report


def _expire(session: Session, queue: JobQueue, one: Idleness) -> None:
    environment = session.get(Environment, one.id)
    project = session.get(Project, environment.project_id) if environment else None
    if environment is None or project is None:
        return
    expiry = expires_at(one)
    audit(
        session,
        SYSTEM,
        "environment.expired",
        target_type="environment",
        target_id=one.id,
        target=f"{project.name}/{environment.name}",
        team_id=project.team_id,
        details={
            "ttl_hours": one.ttl_hours,
            "last_active_at": one.active_at.isoformat(),
            "expired_at": expiry.isoformat() if expiry else None,
        },
    )
    session.commit()
    environments.delete_environment(session=session, actor=SYSTEM, queue=queue, environment_id=one.id)
