"""``POST /api/v1/environment-identity/git-credentials``: git's credentials, for an environment itself.

The caller is no person and holds no envhub token: it is the relay of git's
credential helper in a local environment, presenting that environment's
short-lived identity (``Authorization: Bearer ehe_...``), or the helper in a
Kubernetes workspace, presenting the pod's projected ServiceAccount token for
envhub (which the runtime reviews with the cluster). The use case checks it,
and audits what it hands out.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from pydantic import BaseModel, Field

from envhub.api.clients import client_ip
from envhub.api.v1.models import answers
from envhub.domain.git_credentials import ENDPOINT, IDENTITY_PREFIX
from envhub.errors import Unauthenticated
from envhub.models.db import session_scope
from envhub.services import git_credentials, ports
from envhub.services.authentication import bearer_token

router = APIRouter()


class GitRequest(BaseModel):
    """What git asked its credential helper (git's own field names)."""

    protocol: str = Field(min_length=1, max_length=20, pattern=r"^[a-z][a-z0-9+.-]*$")
    host: str = Field(min_length=1, max_length=255, pattern=r"^[^\s/@\x00]+$")
    path: str = Field(default="", max_length=1000)


class GitCredentialsOut(BaseModel):
    username: str
    password: str
    password_expiry_utc: int
    expires_at: str


@router.post(
    ENDPOINT,
    response_model=GitCredentialsOut,
    responses=answers(401, 403, 404, 409, 422, 502),
    tags=["environments"],
    summary="A short-lived token for the project's repository, for git inside an environment",
    openapi_extra={"security": []},
)
def environment_git_credentials(
    body: GitRequest,
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
) -> git_credentials.GitCredentials:
    identity = bearer_token(authorization)
    if identity is None:
        raise Unauthenticated(
            "an environment identity (Authorization: Bearer ehe_...) or a workload's token is required"
        )
    # A workload's token is the cluster's to check: only then is the runtime needed.
    runtime = None if identity.startswith(IDENTITY_PREFIX) else ports.runtime()
    with session_scope() as session:
        return git_credentials.git_credentials(
            session=session,
            identity=identity,
            protocol=body.protocol,
            host=body.host,
            source_ip=client_ip(request.scope),
            runtime=runtime,
        )
