"""Who may do what. Pure data, checked by the services and nowhere else.

Three sources of power combine:

* a **team role** (owner, admin, member, viewer) covers every project and
  environment of the team;
* an **environment share** (viewer, editor, admin) covers one environment,
  for a user or for every member of another team, optionally until a date;
* a **token's scopes** narrow what its owner's roles allow, and an agent token
  is confined to its one environment.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from envhub.domain.principals import Principal, PrincipalType, Scope


class Action(StrEnum):
    project_read = "project.read"
    project_create = "project.create"
    project_update = "project.update"
    project_delete = "project.delete"
    secret_write = "secret.write"  # noqa: S105 - set or delete a project's secrets (names are readable)
    environment_read = "environment.read"
    environment_create = "environment.create"
    environment_redeploy = "environment.redeploy"
    environment_delete = "environment.delete"
    environment_shell = "environment.shell"  # open a terminal and type in it
    environment_watch = "environment.watch"  # watch a terminal session others drive
    environment_share = "environment.share"  # grant, change or revoke access to it
    audit_read = "audit.read"
    team_read = "team.read"  # see the team, its members and invitations
    team_manage = "team.manage"  # invite, change roles below owner, remove members
    team_own = "team.own"  # grant or take away ownership
    release_create = "release.create"  # release a commit to a deployment environment (CI, merges)
    release_approve = "release.approve"  # approve a waiting release (its environment names the role)
    release_cancel = "release.cancel"  # cancel a release that waits
    release_rollback = "release.rollback"  # land an earlier release's content again


class TeamRole(StrEnum):
    owner = "owner"
    admin = "admin"
    member = "member"
    viewer = "viewer"


class ShareRole(StrEnum):
    viewer = "viewer"  # see it, its logs, watch terminals
    editor = "editor"  # also shell in, redeploy
    admin = "admin"  # also delete, share


_VIEW = {
    Action.project_read,
    Action.environment_read,
    Action.environment_watch,
    Action.audit_read,
    Action.team_read,
}
_MEMBER = _VIEW | {
    Action.environment_shell,
    Action.environment_create,
    Action.environment_redeploy,
    Action.environment_delete,
    Action.release_create,
    Action.release_approve,
    Action.release_cancel,
}
_ADMIN = _MEMBER | {
    Action.release_rollback,
    Action.project_create,
    Action.project_update,
    Action.project_delete,
    Action.secret_write,
    Action.environment_share,
    Action.team_manage,
}

ROLE_ACTIONS: dict[str, frozenset[Action]] = {
    TeamRole.viewer: frozenset(_VIEW),
    TeamRole.member: frozenset(_MEMBER),
    TeamRole.admin: frozenset(_ADMIN),
    TeamRole.owner: frozenset(_ADMIN | {Action.team_own}),
}

_SHARE_VIEW = {Action.environment_read, Action.environment_watch}
_SHARE_EDIT = _SHARE_VIEW | {Action.environment_shell, Action.environment_redeploy}
SHARE_ACTIONS: dict[str, frozenset[Action]] = {
    ShareRole.viewer: frozenset(_SHARE_VIEW),
    ShareRole.editor: frozenset(_SHARE_EDIT),
    ShareRole.admin: frozenset(_SHARE_EDIT | {Action.environment_delete, Action.environment_share}),
}

# What can be done to one environment: the only actions shares and agents reach.
ENVIRONMENT_ACTIONS = frozenset(SHARE_ACTIONS[ShareRole.admin])

# A share with a whole team gives each member at most what their own role in
# that team suggests: a viewer there does not get a shell here.
TEAM_SHARE_CEILING: dict[str, ShareRole] = {
    TeamRole.viewer: ShareRole.viewer,
    TeamRole.member: ShareRole.editor,
    TeamRole.admin: ShareRole.admin,
    TeamRole.owner: ShareRole.admin,
}
_SHARE_RANK = {ShareRole.viewer: 0, ShareRole.editor: 1, ShareRole.admin: 2}
_TEAM_RANK = {TeamRole.viewer: 0, TeamRole.member: 1, TeamRole.admin: 2, TeamRole.owner: 3}

SCOPE_ACTIONS: dict[Scope, frozenset[Action]] = {
    Scope.read: frozenset(_VIEW),
    Scope.write: frozenset(
        {
            Action.project_create,
            Action.project_update,
            Action.secret_write,
            Action.environment_create,
            Action.environment_redeploy,
            Action.release_create,
            Action.release_approve,
            Action.release_cancel,
            Action.release_rollback,
        }
    ),
    # CI: release commits and images, and nothing else (never approve).
    Scope.deploy: frozenset({Action.release_create}),
    Scope.shell: frozenset({Action.environment_shell}),
    Scope.admin: frozenset(
        {
            Action.project_delete,
            Action.environment_delete,
            Action.environment_share,
            Action.team_manage,
            Action.team_own,
        }
    ),
}


def role_at_least(role: str | None, minimum: TeamRole) -> bool:
    """Whether team role ``role`` (None: not a member) is ``minimum`` or above."""
    return role is not None and _TEAM_RANK[TeamRole(role)] >= _TEAM_RANK[minimum]


def role_allows(role: str | None, action: Action) -> bool:
    return role is not None and action in ROLE_ACTIONS.get(role, frozenset())


def capped_share_role(share_role: str, team_role: str) -> ShareRole:
    """The role a member of a team gets from a share with their whole team."""
    share, ceiling = ShareRole(share_role), TEAM_SHARE_CEILING[TeamRole(team_role)]
    return share if _SHARE_RANK[share] <= _SHARE_RANK[ceiling] else ceiling


def strongest_share(roles: Iterable[str]) -> ShareRole | None:
    ranked = sorted((ShareRole(role) for role in roles), key=_SHARE_RANK.__getitem__)
    return ranked[-1] if ranked else None


# What an agent may ever do: its environment's actions, less what ``admin`` covers.
AGENT_ACTIONS = ENVIRONMENT_ACTIONS - SCOPE_ACTIONS[Scope.admin]


def principal_allows(principal: Principal, action: Action) -> bool:
    """What the principal's kind and scopes allow, before any role is looked at."""
    if principal.is_system:
        return True
    if principal.type is PrincipalType.agent and action not in AGENT_ACTIONS:
        return False
    if principal.scopes is None:
        return True
    return any(action in SCOPE_ACTIONS[scope] for scope in principal.scopes)
