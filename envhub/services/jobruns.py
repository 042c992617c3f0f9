"""Recording long work as a JobRun and handing it to the queue after commit."""

from __future__ import annotations

import logging

from sqlmodel import Session, col, select

from envhub.domain.progress import (
    PREPARE_STEPS,
    PROVISION_STEPS,
    SLEEP_STEPS,
    TEARDOWN_STEPS,
    WAKE_STEPS,
    initial_steps,
)
from envhub.models import JobRun, JobStatus
from envhub.models.base import utcnow
from envhub.models.job import ACTIVE_JOB_STATUSES
from envhub.queue.base import JobQueue, QueueUnavailable
from envhub.queue.events import environment_channel, project_channel
from envhub.services import ports

log = logging.getLogger(__name__)

CONVERGE_JOB = "envhub.jobs.environments.converge_environment"
# A run that re-applies a ready environment to restore anything changed or
# deleted behind envhub's back (the controller pattern's periodic resync).
RESYNC = "resync"
TEARDOWN = "teardown"
# A deployment environment's namespace and isolation, made before its first release.
PREPARE = "prepare"
# Idle sleep (processes stopped, workspace kept) and waking from it (services/sleeping.py).
SLEEP = "sleep"
WAKE = "wake"


# The steps of the runs whose plan is not the runtime's provision or teardown plan.
PLANS: dict[str, tuple[tuple[str, str], ...]] = {
    TEARDOWN: TEARDOWN_STEPS,
    PREPARE: PREPARE_STEPS,
    SLEEP: SLEEP_STEPS,
    WAKE: WAKE_STEPS,
}


def rq_job_id(run_id: int) -> str:
    return f"envhub-jobrun-{run_id}"


def new_run(
    session: Session, *, environment_id: int, kind: str, generation: int, attempts: int = 0
) -> JobRun:
    """Add a queued JobRun (caller commits), superseding older active runs."""
    for old in active_runs(session, environment_id):
        old.status = JobStatus.abandoned
        old.finished_at = utcnow()
        old.error = old.error or f"superseded by a newer {kind}"
        session.add(old)
    plan = PLANS.get(kind, PROVISION_STEPS)
    run = JobRun(
        kind=kind,
        environment_id=environment_id,
        generation=generation,
        attempts=attempts,
        steps=[dict(step) for step in initial_steps(plan)],
    )
    session.add(run)
    session.flush()
    assert run.id is not None
    run.rq_job_id = rq_job_id(run.id)
    return run


def active_runs(session: Session, environment_id: int) -> list[JobRun]:
    return list(
        session.exec(
            select(JobRun)
            .where(JobRun.environment_id == environment_id, col(JobRun.status).in_(ACTIVE_JOB_STATUSES))
            .order_by(col(JobRun.id))
        )
    )


def dispatch(session: Session, queue: JobQueue, run: JobRun) -> bool:
    """Enqueue a committed run. False when the queue is down (the reconciler retries)."""
    assert run.id is not None
    assert run.rq_job_id is not None
    try:
        queue.enqueue(CONVERGE_JOB, run.environment_id, run.id, job_id=run.rq_job_id)
    except QueueUnavailable as exc:
        log.warning("queue unavailable, job run %s will be re-driven: %s", run.id, exc)
        return False
    run.enqueued_at = utcnow()
    session.add(run)
    session.commit()
    return True


def announce(*, environment_id: int | None = None, project_id: int | None = None) -> None:
    """Tell open dashboards that something changed (best effort)."""
    channels = []
    if environment_id is not None:
        channels.append(environment_channel(environment_id))
    if project_id is not None:
        channels.append(project_channel(project_id))
    ports.changes().publish(*channels)
