"""Short-lived tokens for an environment's ServiceAccount: issued (TokenRequest) and checked (TokenReview).

Each call asks the API server for a new bound token with an expiry; nothing is
stored. :func:`review_token` asks the API server whether a token a workload
presented is one it signed for an audience (a workspace's projected token for
envhub: ``domain/kube/git_credentials.py``), and for whom. (Kubernetes v1.20
still creates a long-lived token Secret for every ServiceAccount; the workload
Role cannot read Secrets, and envhub never hands those out.)
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes.client import (
    AuthenticationV1Api,
    AuthenticationV1TokenRequest,
    CoreV1Api,
    V1TokenRequestSpec,
    V1TokenReview,
    V1TokenReviewSpec,
)

from envhub.runtime.base import WorkloadCredentials
from envhub.runtime.kubernetes.errors import kube_call, kube_json

# The API server refuses shorter tokens (its minimum is 10 minutes).
MIN_TTL = 600
MAX_TTL = 3600


def server_trust(configuration: Any) -> tuple[str, bool]:
    """The CA bundle (PEM) envhub's client trusts for the API server, and whether it skips verification."""
    ca_file = getattr(configuration, "ssl_ca_cert", None)
    pem = ""
    if ca_file:
        try:
            pem = Path(str(ca_file)).read_text()
        except OSError:
            pem = ""
    return pem, not bool(getattr(configuration, "verify_ssl", True))


def request_token(
    core: CoreV1Api,
    *,
    namespace: str,
    account: str,
    ttl_seconds: int,
    server: str,
    certificate_authority: str = "",
    insecure: bool = False,
) -> WorkloadCredentials:
    ttl = max(MIN_TTL, min(int(ttl_seconds), MAX_TTL))
    body = AuthenticationV1TokenRequest(spec=V1TokenRequestSpec(audiences=[], expiration_seconds=ttl))
    response: Any = kube_call(
        f"requesting a token for {namespace}/{account}",
        core.create_namespaced_service_account_token,
        account,
        namespace,
        body,
    )
    expires = response.status.expiration_timestamp
    stamp = expires.astimezone(UTC).isoformat() if isinstance(expires, datetime) else str(expires)
    return WorkloadCredentials(
        token=str(response.status.token),
        expires_at=stamp,
        namespace=namespace,
        server=server,
        account=account,
        certificate_authority=certificate_authority,
        insecure=insecure,
    )


def review_token(authentication: AuthenticationV1Api, token: str, *, audience: str) -> str | None:
    """The user name the API server vouches ``token`` for, when it signed it for ``audience``
    (and it has not expired, nor its pod or account been deleted); None when it does not."""
    body = V1TokenReview(spec=V1TokenReviewSpec(token=token, audiences=[audience]))
    review = kube_json("reviewing a workload's token", authentication.create_token_review, body)
    status = review.get("status") or {}
    # An authenticator that ignores audiences answers without them: that is no vouching for ours.
    if status.get("authenticated") is not True or audience not in (status.get("audiences") or []):
        return None
    username = (status.get("user") or {}).get("username")
    return username if isinstance(username, str) else None
