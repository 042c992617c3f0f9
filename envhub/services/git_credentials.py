"""Git credentials for an environment's own git: a short-lived token for the project's repository.

git inside an environment asks its credential helper, whose relay asks here
with the environment's identity (``domain/git_credentials.py``): no person's
token, and nothing the sandbox holds. On a cluster the helper presents the
workspace pod's projected ServiceAccount token instead, which the runtime
checks with the cluster and maps to its environment (a ``WorkloadTokenReviewer``:
``domain/kube/git_credentials.py``). envhub checks the identity (signed with
the environment's key, or vouched for by the cluster; unexpired; the environment
still alive), that git asks
for the host of the project's repository and no other, then asks GitHub for an
App installation token restricted to that one repository, to push branches
and open pull requests (``contents`` and ``pull_requests`` write), valid about
an hour. Each issue is audited (the repository, the host, the expiry; never
the token).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import TypedDict

from sqlmodel import Session, select

from envhub.config import get_settings
from envhub.domain import git_credentials as rules
from envhub.domain.phases import Phase
from envhub.domain.principals import Principal, PrincipalType
from envhub.errors import GitHostRefused, GithubAppRequired, GithubNotConnected, Unauthenticated
from envhub.models import Environment, GithubConnection, Project, Team
from envhub.runtime.base import Runtime, WorkloadTokenReviewer
from envhub.services import github
from envhub.services.common import AuditTarget, audited


class GitCredentials(TypedDict):
    """What git's credential helper prints: the username, the token, and when it expires."""

    username: str
    password: str
    password_expiry_utc: int  # Unix time (git drops the token then)
    expires_at: str  # the same, ISO 8601


def repository_origin(session: Session, project_id: int) -> str:
    """The origin (``https://github.com``) of the project's GitHub repository; "" when it has none."""
    connection = _connection(session, project_id)
    if connection is None:
        return ""
    return rules.origin_of(github.repository_url(connection.api_url, connection.repository))


def git_credentials(
    *,
    session: Session,
    identity: str,
    protocol: str,
    host: str,
    source_ip: str | None = None,
    runtime: Runtime | None = None,
) -> GitCredentials:
    """A token for git's ``protocol://host``, for the environment ``identity`` stands for: an
    environment identity (``ehe_...``), or a workload's token that ``runtime`` reviews."""
    environment, project, team = _identified(session, identity, runtime)
    actor = Principal(
        name=f"environment {team.name}/{project.name}/{environment.name}",
        type=PrincipalType.system,
        environment_id=environment.id,
        source_ip=source_ip,
        user_agent="git-credential-envhub",
    )
    target = AuditTarget(
        "environment", id=environment.id, name=f"{project.name}/{environment.name}", team_id=team.id
    )
    with audited(session, actor, "environment.git_credentials", target):
        target.details = {"protocol": protocol[:20], "host": host[:200]}
        connection = _connection(session, project.id or 0)
        if connection is None:
            raise GithubNotConnected(
                f"project {project.name!r} is not connected to a GitHub repository, "
                "so envhub has no git credentials to give"
            )
        origin = rules.origin_of(github.repository_url(connection.api_url, connection.repository))
        target.details["repository"] = connection.repository
        if not rules.same_origin(protocol, host, origin):
            raise GitHostRefused(
                f"envhub gives git credentials for {origin} (the project's repository) only, "
                f"not for {protocol}://{host}"
            )
        if connection.auth != "app":
            raise GithubAppRequired(
                f"project {project.name!r} is connected to GitHub with a token, not a GitHub App: "
                "envhub hands environments short-lived App installation tokens only"
            )
        client = github.client_for(connection, max_wait=0)
        try:
            token = client.repository_token(rules.PUSH_PERMISSIONS)
        finally:
            client.close()
        expires = token.expires_at
        stamp = int(expires.timestamp()) if isinstance(expires, datetime) else int(time.time()) + 3600
        target.details |= {"permissions": dict(rules.PUSH_PERMISSIONS), "expires_at": _iso(expires)}
    return GitCredentials(
        username=rules.USERNAME,
        password=token.token,
        password_expiry_utc=stamp,
        expires_at=_iso(expires),
    )


def _identified(
    session: Session, identity: str, runtime: Runtime | None
) -> tuple[Environment, Project, Team]:
    """The live environment ``identity`` was signed (or, a workload's token, vouched) for, or
    ``unauthenticated``."""
    refused = Unauthenticated(
        "the environment identity is invalid or has expired",
        hint="git inside an environment asks through envhub's credential helper; restart the "
        "environment if it was started before the project was connected to GitHub.",
    )
    signed = identity.startswith(rules.IDENTITY_PREFIX)
    if signed:
        environment_id = rules.claimed_environment(identity)
    elif runtime is not None and isinstance(runtime, WorkloadTokenReviewer):
        environment_id = runtime.environment_of_token(identity)
    else:
        raise refused
    environment = session.get(Environment, environment_id) if environment_id is not None else None
    if environment is None or environment.phase in (Phase.deleting, Phase.deleted):
        raise refused
    project = session.get(Project, environment.project_id)
    team = session.get(Team, project.team_id) if project is not None else None
    if project is None or team is None:
        raise refused
    if not signed:
        return environment, project, team
    secret = get_settings().derived_key(rules.IDENTITY_KEY_PURPOSE)
    key = rules.environment_key(secret, environment.id or 0, team.name, project.name, environment.name)
    if not rules.verify_identity(key, identity, time.time()):
        raise refused
    return environment, project, team


def _connection(session: Session, project_id: int) -> GithubConnection | None:
    return session.exec(select(GithubConnection).where(GithubConnection.project_id == project_id)).first()


def _iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment is not None else ""
