"""The Ingress that gives an environment its public URLs (the ``ingress`` URL provider).

One per environment, in its namespace: a rule for its public Service's port, on
the host the provider chose (:func:`envhub.domain.public.wildcard_host`), and one
for each forwarded port of its workspace with a URL of its own, on that port's
host (:func:`envhub.domain.public.port_host`), always over TLS (every host in
one certificate). Applied and pruned with the environment's other objects and gone
with its namespace. User manifests may not hold Ingresses (guards.py), so this
is the only one, and it carries envhub's labels like everything envhub makes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from envhub.domain.kube.deployments import PublicEndpoint
from envhub.domain.kube.names import metadata
from envhub.domain.public import IngressRoute

INGRESS_NAME = "envhub-public"
# Where cert-manager puts the certificate it issues for the host.
ISSUED_TLS_SECRET = "envhub-public-tls"  # noqa: S105 - a Secret's name, not a secret
CLUSTER_ISSUER_ANNOTATION = "cert-manager.io/cluster-issuer"


def render_ingress(
    route: IngressRoute,
    public: PublicEndpoint | None,
    *,
    namespace: str,
    labels: dict[str, str],
    ports: Mapping[int, PublicEndpoint] | None = None,
) -> dict[str, Any] | None:
    """The Ingress for ``public`` on the route's host and for each of ``ports`` (forwarded port ->
    where it is served) on its own host; None when there is nothing to route."""
    backends = {route.host: public} if public is not None else {}
    backends.update({route.port_host(port): endpoint for port, endpoint in (ports or {}).items()})
    if not backends:
        return None
    meta = metadata(INGRESS_NAME, namespace, labels)
    tls: dict[str, Any] = {"hosts": list(backends)}
    if route.cluster_issuer:
        meta["annotations"] = {CLUSTER_ISSUER_ANNOTATION: route.cluster_issuer}
        tls["secretName"] = ISSUED_TLS_SECRET
    elif route.tls_secret:
        tls["secretName"] = route.tls_secret
    spec: dict[str, Any] = {}
    if route.class_name:
        spec["ingressClassName"] = route.class_name
    spec["tls"] = [tls]
    spec["rules"] = [
        {
            "host": host,
            "http": {
                "paths": [
                    {
                        "path": "/",
                        "pathType": "Prefix",
                        "backend": {"service": {"name": backend.service, "port": {"number": backend.port}}},
                    }
                ]
            },
        }
        for host, backend in backends.items()
    ]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta, "spec": spec}
