"""Credentials handed out at the moment of use: environment tokens, kubectl groups.

``environment_credentials`` gives someone who may shell into an environment
(or an agent holding its token) a fresh, short-lived token for the
environment's own ServiceAccount; nothing is stored, and the audit row records
who got one until when, never the token.
"""

from __future__ import annotations

from sqlmodel import Session, col, select

from envhub.domain.kube import kube_groups
from envhub.domain.policy import Action
from envhub.domain.principals import Principal
from envhub.errors import NotFound, Unsupported
from envhub.models import Environment, Membership, Team
from envhub.runtime.base import CredentialIssuer, Runtime, WorkloadCredentials
from envhub.services.access import authorize_environment, require_scope
from envhub.services.common import AuditTarget, audited

DEFAULT_TTL = 600


def environment_credentials(
    *,
    session: Session,
    actor: Principal,
    runtime: Runtime,
    environment_id: int,
    ttl_seconds: int = DEFAULT_TTL,
) -> WorkloadCredentials:
    target = AuditTarget("environment", id=environment_id)
    with audited(session, actor, "environment.credentials", target):
        environment = session.get(Environment, environment_id)
        if environment is None:
            raise NotFound(f"environment {environment_id} was not found")
        project = authorize_environment(
            session, actor, environment, Action.environment_read, what="environment"
        )
        target.name, target.team_id = f"{project.name}/{environment.name}", project.team_id
        authorize_environment(session, actor, environment, Action.environment_shell, what="environment")
        if not isinstance(runtime, CredentialIssuer):
            raise Unsupported(
                f"the {runtime.name} runtime has no workload identity to issue credentials for",
                hint="kubectl access needs envhub on the Kubernetes runtime (ENVHUB_RUNTIME=kubernetes).",
            )
        issued = runtime.issue_credentials(environment_id, ttl_seconds=ttl_seconds)
        target.team_id = project.team_id
        target.details = {
            "account": issued.account,
            "namespace": issued.namespace,
            "expires_at": issued.expires_at,
        }
    return issued


def kubernetes_groups(*, session: Session, actor: Principal) -> list[str]:
    """The groups that give this person kubectl access to their teams' namespaces."""
    if actor.user_id is None or actor.is_agent:
        return []
    require_scope(actor, Action.team_read)
    rows = session.exec(
        select(Team.name, Membership.role)
        .join(Membership, col(Membership.team_id) == Team.id)
        .where(Membership.user_id == actor.user_id)
    )
    return kube_groups((name, str(role)) for name, role in rows)
