"""The Ingress that gives an environment its public URL (the ``ingress`` URL provider).

One per environment, in its namespace, for its public Service's port, on the
host the provider chose (:func:`envhub.domain.public.wildcard_host`), always
over TLS. Applied and pruned with the environment's other objects and gone
with its namespace. User manifests may not hold Ingresses (guards.py), so this
is the only one, and it carries envhub's labels like everything envhub makes.
"""

from __future__ import annotations

from typing import Any

from envhub.domain.kube.deployments import PublicEndpoint
from envhub.domain.kube.names import metadata
from envhub.domain.public import IngressRoute

INGRESS_NAME = "envhub-public"
# Where cert-manager puts the certificate it issues for the host.
ISSUED_TLS_SECRET = "envhub-public-tls"  # noqa: S105 - a Secret's name, not a secret
CLUSTER_ISSUER_ANNOTATION = "cert-manager.io/cluster-issuer"


def render_ingress(
    route: IngressRoute, public: PublicEndpoint, *, namespace: str, labels: dict[str, str]
) -> dict[str, Any]:
    meta = metadata(INGRESS_NAME, namespace, labels)
    tls: dict[str, Any] = {"hosts": [route.host]}
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
            "host": route.host,
            "http": {
                "paths": [
                    {
                        "path": "/",
                        "pathType": "Prefix",
                        "backend": {"service": {"name": public.service, "port": {"number": public.port}}},
                    }
                ]
            },
        }
    ]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta, "spec": spec}
