"""An environment rendered as Kubernetes objects (plain dicts), without I/O.

The Kubernetes runtime adapter applies what :func:`render_environment` returns;
everything that decides *what* an environment looks like in a cluster lives
here, so it can be snapshot-tested and validated against the API schemas
without a cluster.
"""

from envhub.domain.kube.access import kube_groups, render_team_access, team_group
from envhub.domain.kube.deployments import PublicEndpoint, public_endpoint, render_deployment, render_service
from envhub.domain.kube.egress import EgressDenyList, check_egress
from envhub.domain.kube.errors import EgressDenied, ManifestInvalid, ManifestRejected
from envhub.domain.kube.inventory import (
    APPLIED_ANNOTATION,
    PUBLIC_ANNOTATION,
    SERVICES_ANNOTATION,
    Applied,
    applied,
    decode_applied,
    dropped,
    encode_applied,
    render_inventory,
)
from envhub.domain.kube.limits import PlatformLimits, clamp_quota, render_limit_range, render_resource_quota
from envhub.domain.kube.manifests import (
    CLUSTER_SCOPED_KINDS,
    IsNamespaced,
    check_manifests,
    parse_manifests,
    scope_manifests,
)
from envhub.domain.kube.names import (
    NAMESPACE_PREFIX,
    WORKLOAD_ACCOUNT,
    is_namespace_of,
    namespace_for,
    namespace_name,
)
from envhub.domain.kube.network import render_network_policies
from envhub.domain.kube.quantities import clamp_quantity, parse_quantity
from envhub.domain.kube.rbac import render_rbac
from envhub.domain.kube.render import (
    DEFAULT_INGRESS_NAMESPACES,
    pod_security_labels,
    render_environment,
    render_namespace,
)

__all__ = [
    "APPLIED_ANNOTATION",
    "CLUSTER_SCOPED_KINDS",
    "DEFAULT_INGRESS_NAMESPACES",
    "NAMESPACE_PREFIX",
    "PUBLIC_ANNOTATION",
    "SERVICES_ANNOTATION",
    "WORKLOAD_ACCOUNT",
    "Applied",
    "EgressDenied",
    "EgressDenyList",
    "IsNamespaced",
    "ManifestInvalid",
    "ManifestRejected",
    "PlatformLimits",
    "PublicEndpoint",
    "applied",
    "check_egress",
    "check_manifests",
    "clamp_quantity",
    "clamp_quota",
    "decode_applied",
    "dropped",
    "encode_applied",
    "is_namespace_of",
    "kube_groups",
    "namespace_for",
    "namespace_name",
    "parse_manifests",
    "parse_quantity",
    "pod_security_labels",
    "public_endpoint",
    "render_deployment",
    "render_environment",
    "render_inventory",
    "render_limit_range",
    "render_namespace",
    "render_network_policies",
    "render_rbac",
    "render_resource_quota",
    "render_service",
    "render_team_access",
    "scope_manifests",
    "team_group",
]
