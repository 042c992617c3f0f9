"""The database tables, one module per aggregate.

Importing this package registers every table on ``SQLModel.metadata`` (Alembic's
autogenerate and the tests rely on that).
"""

from envhub.models.audit import AuditEvent
from envhub.models.environment import Environment
from envhub.models.identity import Membership, Role, Team, User
from envhub.models.job import JobRun, JobStatus
from envhub.models.project import Project

__all__ = [
    "AuditEvent",
    "Environment",
    "JobRun",
    "JobStatus",
    "Membership",
    "Project",
    "Role",
    "Team",
    "User",
]
