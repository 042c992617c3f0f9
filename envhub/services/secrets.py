"""Secrets envhub keeps: environment secrets of a project, integration credentials of a team.

Values are sealed with AES-GCM (``services/crypto.py``) before they reach the
database, bound to where they belong, and never come back out through a
use case a person can call: listing shows names and dates only. The plain
value is opened only by :func:`environment_secrets`, which jobs call at the
moment they hand an environment its configuration.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from envhub.domain.policy import Action
from envhub.domain.principals import Principal
from envhub.domain.variables import check_names
from envhub.errors import NotFound, ValidationFailed
from envhub.models import Project, StoredSecret, Team
from envhub.models.base import utcnow
from envhub.services.access import authorize
from envhub.services.common import AuditTarget, audited
from envhub.services.crypto import cipher

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
MAX_VALUE = 64 * 1024
INTEGRATION = "integration"


@dataclass(frozen=True, slots=True)
class SecretInfo:
    """What may be shown about a secret: never its value."""

    id: int
    name: str
    updated_at: datetime


def _scope_of(project_id: int | None) -> str:
    return f"project:{project_id}" if project_id is not None else INTEGRATION


def _purpose(team_id: int, scope: str, name: str) -> str:
    return f"secret:team:{team_id}:{scope}:{name}"


def _where(
    session: Session, actor: Principal, *, team_id: int | None, project_id: int | None, action: Action
) -> tuple[int, str, str]:
    """(team id, scope, label) after authorizing ``action`` there."""
    if project_id is not None:
        project = session.get(Project, project_id)
        if project is None:
            raise NotFound(f"project {project_id} was not found")
        authorize(session, actor, project.team_id, action, what=f"project {project_id}")
        return project.team_id, _scope_of(project_id), project.name
    if team_id is None:
        raise ValidationFailed("a secret belongs to a project or to a team")
    authorize(session, actor, team_id, action, what=f"team {team_id}")
    team = session.get(Team, team_id)
    return team_id, INTEGRATION, team.name if team else str(team_id)


def set_secret(
    *,
    session: Session,
    actor: Principal,
    name: str,
    value: str,
    project_id: int | None = None,
    team_id: int | None = None,
) -> SecretInfo:
    """Create or replace a secret. The value is write-only from here on."""
    target = AuditTarget(
        "project" if project_id is not None else "team", id=project_id or team_id, name=name[:100]
    )
    with audited(session, actor, "secret.set", target):
        team, scope, label = _where(
            session, actor, team_id=team_id, project_id=project_id, action=Action.secret_write
        )
        target.team_id, target.name = team, f"{label}:{name[:100]}"
        if not _NAME.match(name):
            raise ValidationFailed(
                "a secret's name is a variable name: letters, digits and _, not starting with a digit",
                details={"field": "name"},
            )
        if project_id is not None:  # a project secret becomes an environment variable
            check_names([name], field="name")
        if "\0" in value:
            raise ValidationFailed(
                "a secret's value cannot contain NUL characters", details={"field": "value"}
            )
        if not value or len(value.encode()) > MAX_VALUE:
            raise ValidationFailed(
                f"a secret's value is 1 byte to {MAX_VALUE // 1024} KiB", details={"field": "value"}
            )
        row = session.exec(
            select(StoredSecret).where(
                StoredSecret.team_id == team, StoredSecret.scope == scope, StoredSecret.name == name
            )
        ).first()
        replaced = row is not None
        if row is None:
            row = StoredSecret(
                team_id=team,
                scope=scope,
                project_id=project_id,
                name=name,
                value="",
                created_by_id=actor.user_id,
            )
        row.value = cipher().seal(value, purpose=_purpose(team, scope, name))
        row.updated_at = utcnow()
        session.add(row)
        session.flush()
        # The audit row names the secret, never its value.
        target.team_id = team
        target.details = {"name": name, "replaced": replaced, "scope": scope}
    assert row.id is not None
    return SecretInfo(id=row.id, name=row.name, updated_at=row.updated_at)


def list_secrets(
    *, session: Session, actor: Principal, project_id: int | None = None, team_id: int | None = None
) -> list[SecretInfo]:
    team, scope, _label = _where(
        session, actor, team_id=team_id, project_id=project_id, action=Action.project_read
    )
    rows = session.exec(
        select(StoredSecret)
        .where(StoredSecret.team_id == team, StoredSecret.scope == scope)
        .order_by(col(StoredSecret.name))
    )
    return [SecretInfo(id=row.id or 0, name=row.name, updated_at=row.updated_at) for row in rows]


def delete_secret(*, session: Session, actor: Principal, secret_id: int) -> None:
    target = AuditTarget("secret", id=secret_id)
    with audited(session, actor, "secret.delete", target):
        row = session.get(StoredSecret, secret_id)
        if row is None:
            raise NotFound(f"secret {secret_id} was not found")
        authorize(session, actor, row.team_id, Action.secret_write, what=f"secret {secret_id}")
        target.name, target.team_id = row.name, row.team_id
        session.delete(row)
        target.name = row.name
        target.team_id = row.team_id
        target.details = {"name": row.name, "scope": row.scope}


def environment_secrets(session: Session, *, team_id: int, project_id: int) -> dict[str, str]:
    """The plain values of a project's secrets, for a job handing them to an environment.

    Not a use case anyone calls: no principal, no audit row per read (jobs read
    them at every deploy); the caller must only pass them to the runtime.
    """
    scope = _scope_of(project_id)
    rows = session.exec(
        select(StoredSecret).where(StoredSecret.team_id == team_id, StoredSecret.scope == scope)
    )
    sealer = cipher()
    return {row.name: sealer.open(row.value, purpose=_purpose(team_id, scope, row.name)) for row in rows}
