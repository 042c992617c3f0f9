"""The Service that sends a sign-in project's public traffic to envhub's gateway.

For a project whose URLs need envhub sign-in, the Ingress (``ingress``
provider) or the tunnel rule (``cloudflare``) must not reach the environment's
Service directly: it goes to envhub's gateway, which asks for the pass and
then relays. This ExternalName Service, in the environment's own namespace,
is the name both point at; it resolves to ``ENVHUB_GATEWAY_INTERNAL_URL``'s
host. Being in the namespace, it is pruned when the project makes its URLs
public again and deleted with the namespace, and the tunnel rule's service
(``http://envhub-gateway.<namespace>.svc:<port>``) still names the
environment's namespace, so the orphan sweep can tell whose the rule is.
"""

from __future__ import annotations

from typing import Any

from envhub.domain.kube.names import metadata
from envhub.domain.public import GatewayAddress

GATEWAY_SERVICE = "envhub-gateway"


def render_gateway_service(
    gateway: GatewayAddress, *, namespace: str, labels: dict[str, str]
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(GATEWAY_SERVICE, namespace, labels),
        "spec": {
            "type": "ExternalName",
            "externalName": gateway.host,
            "ports": [{"name": "http", "port": gateway.port, "protocol": "TCP"}],
        },
    }
