"""Small builders of teams, projects and environments straight in the database."""

from __future__ import annotations

from sqlmodel import Session, select

from envhub.domain.phases import Phase
from envhub.models import Environment, Project, Team


def environment_in(
    session: Session, *, team_name: str, project: str, name: str, phase: Phase = Phase.ready
) -> int:
    """An environment row (no job runs it) in ``team_name``/``project``; returns its id."""
    team = session.exec(select(Team).where(Team.name == team_name)).one()
    row = session.exec(select(Project).where(Project.team_id == team.id, Project.name == project)).first()
    if row is None:
        row = Project(team_id=team.id or 0, name=project)
        session.add(row)
        session.flush()
    environment = Environment(project_id=row.id or 0, name=name, phase=phase, spec={"command": "true"})
    session.add(environment)
    session.commit()
    assert environment.id is not None
    return environment.id
