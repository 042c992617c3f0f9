"""``POST /api/v1/environments/{id}/credentials``: a short-lived token for kubectl.

What ``envhub kube-credential`` (the kubeconfig's exec plugin) asks for: the
API server, the CA envhub trusts for it, the environment's namespace and a
fresh token for its ServiceAccount with its expiry. Nothing is stored; the
use case authorizes (``environment.shell``) and audits each one.
"""

from __future__ import annotations

import base64
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from envhub.api.v1.models import Caller, Id, Number, answers
from envhub.models.db import session_scope
from envhub.services import credentials, ports

router = APIRouter(prefix="/api/v1")


class CredentialsIn(BaseModel):
    ttl_seconds: Number = Field(default=credentials.DEFAULT_TTL, ge=600, le=3600)


class Credentials(BaseModel):
    server: str
    certificate_authority_data: str
    insecure_skip_tls_verify: bool
    namespace: str
    account: str
    token: str
    expires_at: str


@router.post(
    "/environments/{environment_id}/credentials",
    response_model=Credentials,
    responses=answers(404, 409, 502, 503),
    tags=["environments"],
    summary="A short-lived Kubernetes token for the environment's namespace (kubectl's exec plugin)",
)
def environment_credentials(
    environment_id: Id, actor: Caller, body: CredentialsIn | None = None
) -> dict[str, Any]:
    with session_scope() as session:
        issued = credentials.environment_credentials(
            session=session,
            actor=actor,
            runtime=ports.runtime(),
            environment_id=environment_id,
            ttl_seconds=(body or CredentialsIn()).ttl_seconds,
        )
    ca = issued.certificate_authority
    return {
        "server": issued.server,
        "certificate_authority_data": base64.b64encode(ca.encode()).decode() if ca else "",
        "insecure_skip_tls_verify": issued.insecure,
        "namespace": issued.namespace,
        "account": issued.account,
        "token": issued.token,
        "expires_at": issued.expires_at,
    }
