"""Which environment a public URL points at, and whether it can take traffic.

Public URLs of development environments are public by design (like preview
URLs), so this lookup needs no principal; it reveals only the phase.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, col, select

from envhub.domain.naming import is_label
from envhub.domain.phases import Phase
from envhub.models import Environment, Project, Team
from envhub.runtime.base import Endpoint, Runtime


@dataclass(frozen=True, slots=True)
class Resolution:
    found: bool
    phase: Phase | None = None
    message: str = ""
    endpoint: Endpoint | None = None
    label: str = ""


def valid_route(*, team: str, project: str, environment: str) -> bool:
    """Whether a host's labels could name an environment at all (checked before any query)."""
    return is_label(team) and is_label(project) and is_label(environment)


def resolve_public_host(
    *, session: Session, runtime: Runtime, team: str, project: str, environment: str
) -> Resolution:
    if not valid_route(team=team, project=project, environment=environment):
        return Resolution(found=False, label=f"{project}/{environment}"[:200])
    row = session.exec(
        select(Environment)
        .join(Project, col(Project.id) == Environment.project_id)
        .join(Team, col(Team.id) == Project.team_id)
        .where(
            Team.name == team,
            Project.name == project,
            Environment.name == environment,
            Environment.phase != Phase.deleted,
        )
    ).first()
    label = f"{project}/{environment}"
    if row is None or row.id is None:
        return Resolution(found=False, label=label)
    endpoint = runtime.endpoint(row.id) if row.phase in (Phase.ready, Phase.updating) else None
    return Resolution(found=True, phase=row.phase, message=row.message, endpoint=endpoint, label=label)
