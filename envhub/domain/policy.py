"""Who may do what: team roles mapped to actions. Pure data, checked by services."""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    project_read = "project.read"
    project_create = "project.create"
    project_update = "project.update"
    project_delete = "project.delete"
    environment_read = "environment.read"
    environment_create = "environment.create"
    environment_redeploy = "environment.redeploy"
    environment_delete = "environment.delete"
    environment_shell = "environment.shell"  # open a terminal and type in it
    environment_watch = "environment.watch"  # watch a terminal session others drive
    audit_read = "audit.read"


_READ = {Action.project_read, Action.environment_read, Action.audit_read, Action.environment_watch}
_MEMBER = _READ | {
    Action.environment_shell,
    Action.environment_create,
    Action.environment_redeploy,
    Action.environment_delete,
}
_ADMIN = _MEMBER | {Action.project_create, Action.project_update, Action.project_delete}

ROLE_ACTIONS: dict[str, frozenset[Action]] = {
    "viewer": frozenset(_READ),
    "member": frozenset(_MEMBER),
    "admin": frozenset(_ADMIN),
    "owner": frozenset(_ADMIN),
}


def role_allows(role: str | None, action: Action) -> bool:
    return role is not None and action in ROLE_ACTIONS.get(role, frozenset())
