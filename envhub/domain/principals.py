"""Who is acting: a person, a token acting for a person, an agent, or envhub itself.

A principal is built once per request by the interface (from a session cookie
or a bearer token) and handed to every use case, which decides with
:mod:`envhub.domain.policy` what it may do. Tokens never carry more power than
the person who made them: their ``scopes`` narrow the person's roles, and an
agent token is further confined to a single environment and never carries
``admin``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum


class PrincipalType(StrEnum):
    user = "user"  # a person signed in to the dashboard (session cookie)
    token = "token"  # noqa: S105 - a personal access token, acting for its owner
    agent = "agent"  # an agent token: acts for its creator on one environment only
    system = "system"  # envhub itself: jobs, the reconciler


class Scope(StrEnum):
    """What a token may be used for, on top of its owner's roles."""

    read = "read"  # see projects, environments, logs, audit; watch terminals
    write = "write"  # create and change projects and environments, set secrets
    shell = "shell"  # type in environment terminals, fetch environment credentials
    admin = "admin"  # delete, share, manage team members
    deploy = "deploy"  # create releases of deployment environments (for CI), nothing else


ALL_SCOPES = frozenset(Scope)
# An agent works unattended on code nobody reviewed: it may never delete or
# share (the ``admin`` scope), whatever its token's row in the database says.
AGENT_SCOPES = frozenset({Scope.read, Scope.write, Scope.shell})


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    type: PrincipalType = PrincipalType.user
    user_id: int | None = None
    # None: everything the person's roles allow (an interactive session).
    scopes: frozenset[Scope] | None = None
    # Agent tokens: the only environment this principal can see or touch.
    environment_id: int | None = None
    token_id: int | None = None
    # Where the request came from, for the audit trail; not part of identity.
    source_ip: str | None = field(default=None, compare=False)
    user_agent: str | None = field(default=None, compare=False)

    @property
    def is_system(self) -> bool:
        return self.type is PrincipalType.system

    @property
    def is_person(self) -> bool:
        """A person at the dashboard, not a token they made."""
        return self.type is PrincipalType.user and self.user_id is not None

    @property
    def is_agent(self) -> bool:
        return self.type is PrincipalType.agent

    def __post_init__(self) -> None:
        if self.type is PrincipalType.agent and self.scopes is not None and not self.scopes <= AGENT_SCOPES:
            raise ValueError("an agent principal cannot carry the admin scope")

    def with_origin(self, source_ip: str | None, user_agent: str | None) -> Principal:
        return dataclasses.replace(
            self, source_ip=(source_ip or None), user_agent=(user_agent or "")[:300] or None
        )


SYSTEM = Principal(name="envhub", type=PrincipalType.system)
