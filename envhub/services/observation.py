"""What runtimes report about live environments, recorded on their rows.

Runtimes push status changes (``Runtime.watch``); this records them as the
environment's *condition*, separate from its phase: a cluster that cannot be
reached leaves a ready environment ``ready`` with the ``cluster_unreachable``
condition, and workloads deleted behind envhub's back show as ``absent`` so
the reconciler re-creates them.
"""

from __future__ import annotations

from sqlmodel import Session

from envhub.domain.phases import Phase
from envhub.domain.principals import SYSTEM
from envhub.models import Environment, Project
from envhub.models.base import utcnow
from envhub.runtime.base import RuntimeState, RuntimeStatus
from envhub.services import jobruns
from envhub.services.common import audit


def condition_of(status: RuntimeStatus) -> str | None:
    if status.details.get("condition"):
        return status.details["condition"]
    return None if status.state is RuntimeState.ready else status.state.value


def record_status(*, session: Session, environment_id: int, status: RuntimeStatus) -> None:
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
