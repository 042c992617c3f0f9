"""The database tables, one module per aggregate.

Importing this package registers every table on ``SQLModel.metadata`` (Alembic's
autogenerate and the tests rely on that) and the audit chain's commit hook.
"""

from envhub.models import audit_chain as _audit_chain  # noqa: F401  (registers the commit hook)
from envhub.models.access import ApiToken, DeviceAuthorization, LoginLink, WebSession
from envhub.models.audit import AuditChainCheck, AuditChainHead, AuditEvent
from envhub.models.background import BackgroundProcess
from envhub.models.backing import (
    ACTIVE_BACKUP_STATES,
    ACTIVE_RESTORE_STATES,
    BackupMethod,
    BackupState,
    BackupTrigger,
    InstanceState,
    RestorePurpose,
    RestoreState,
    ServiceBackup,
    ServiceInstance,
    ServiceRestore,
)
from envhub.models.environment import Environment
from envhub.models.environment_span import EnvironmentSpan
from envhub.models.github import GithubConnection, PullRequest, WebhookDelivery
from envhub.models.idempotency import IdempotencyKey
from envhub.models.identity import Invite, Membership, Role, Team, User
from envhub.models.job import JobRun, JobStatus
from envhub.models.project import Project
from envhub.models.release import Approval, Artifact, Release
from envhub.models.secrets import StoredSecret
from envhub.models.sharing import EnvironmentShare

__all__ = [
    "ACTIVE_BACKUP_STATES",
    "ACTIVE_RESTORE_STATES",
    "ApiToken",
    "Approval",
    "Artifact",
    "AuditChainCheck",
    "AuditChainHead",
    "AuditEvent",
    "BackgroundProcess",
    "BackupMethod",
    "BackupState",
    "BackupTrigger",
    "DeviceAuthorization",
    "Environment",
    "EnvironmentShare",
    "EnvironmentSpan",
    "GithubConnection",
    "IdempotencyKey",
    "InstanceState",
    "Invite",
    "JobRun",
    "JobStatus",
    "LoginLink",
    "Membership",
    "Project",
    "PullRequest",
    "Release",
    "RestorePurpose",
    "RestoreState",
    "Role",
    "ServiceBackup",
    "ServiceInstance",
    "ServiceRestore",
    "StoredSecret",
    "Team",
    "User",
    "WebSession",
    "WebhookDelivery",
]
