"""What runtimes report about live environments, recorded on their rows.

Runtimes push status changes (``Runtime.watch``); this records them as the
environment's *condition*, separate from its phase: a cluster that cannot be
reached leaves a ready environment ``ready`` with the ``cluster_unreachable``
condition, and workloads deleted behind envhub's back show as ``absent`` so
the reconciler re-creates them.

The end of a removal the runtime finished on its own (``REMOVED``) is not a
condition: it wakes the teardown run that waits for it (:func:`removal_ended`).
"""

from __future__ import annotations

from sqlmodel import Session

from envhub.domain.phases import Phase
from envhub.domain.principals import SYSTEM
from envhub.models import Environment, JobRun, JobStatus, Project
from envhub.models.base import utcnow
from envhub.queue.base import JobQueue
from envhub.runtime.base import REMOVED, RuntimeState, RuntimeStatus
from envhub.services import jobruns, ports
from envhub.services.common import audit


def condition_of(status: RuntimeStatus) -> str | None:
    if status.details.get("condition"):
        return status.details["condition"]
    return None if status.state is RuntimeState.ready else status.state.value


def record_status(*, session: Session, environment_id: int, status: RuntimeStatus) -> None:
    if status.details.get(REMOVED):
        removal_ended(session=session, queue=ports.queue(), environment_id=environment_id)
        return
    environment = session.get(Environment, environment_id)
    if environment is None or environment.phase is Phase.deleted:
        return
    condition = condition_of(status)
    message = status.message if condition else ""
    changed = (environment.condition, environment.condition_message) != (condition, message)
    environment.observed_at = utcnow()
    if changed:
        previous = environment.condition
        environment.condition, environment.condition_message = condition, message
        project = session.get(Project, environment.project_id)
        audit(
            session,
            SYSTEM,
            "environment.condition",
            target_type="environment",
            target_id=environment.id,
            target=f"{project.name if project else '?'}/{environment.name}",
            team_id=project.team_id if project else None,
            details={"from": previous, "to": condition, "message": message},
        )
    session.add(environment)
    session.commit()
    if changed:
        jobruns.announce(environment_id=environment_id, project_id=environment.project_id)


def removal_ended(*, session: Session, queue: JobQueue, environment_id: int) -> bool:
    """The runtime has finished removing an environment: its waiting teardown run goes now,
    rather than when its recheck is due (``convergence.await_removal``). True when woken.

    Every worker's watch reports the same end; the row lock lets one of them wake the run.
    """
    environment = session.get(Environment, environment_id)
    if environment is None or environment.desired_state != "absent":
        return False
    runs = jobruns.active_runs(session, environment_id)
    if not runs or runs[-1].kind != jobruns.TEARDOWN:
        return False
    run = session.get(JobRun, runs[-1].id, with_for_update=True, populate_existing=True)
    if run is None or run.status is not JobStatus.queued or run.retry_at is None:
        session.rollback()  # running (it sees the end itself), or already woken
        return False
    run.retry_at = None
    session.add(run)
    session.commit()
    return jobruns.dispatch(session, queue, run)
