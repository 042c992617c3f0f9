"""NetworkPolicies: deny everything, then allow exactly what an environment needs.

NetworkPolicies are additive (a connection is allowed if any policy allows it),
so envhub renders one default-deny policy and one small policy per reason to
allow traffic. Each can be read, and removed, on its own.

DNS. Pods resolve names through the cluster DNS, usually CoreDNS pods labelled
``k8s-app=kube-dns`` in ``kube-system``. Selecting that namespace needs the
``kubernetes.io/metadata.name`` label, which the API server only sets from v1.21
on, so on v1.20 such a rule silently matches nothing and every lookup times out.
The DNS rule therefore has two peers by default: the precise one (kube-dns pods
in kube-system) and "any pod in any namespace" on port 53 (``dns_any_namespace``).
The second still keeps DNS off the internet (a namespace selector never matches
an external address, so no tunnelling over port 53 to an outside server), and it
also covers clusters whose DNS runs elsewhere. Operators of v1.21+ clusters with
standard kube-dns can turn it off. NodeLocal DNSCache listens on a link-local
host address that pod selectors never match: pass it in ``dns_cidrs``.

Egress to addresses ("cidrs") never includes the operator's deny list (cloud
metadata, the API server, see :mod:`envhub.domain.kube.egress`): a block that
contains a denied address gets it as an ``except`` entry.

Managed CloudNativePG clusters (:func:`render_cluster_policy`). Their pods
need more than a workload: the operator reaches each instance's status port,
the instance manager talks to the API server, and barman sends base backups and
WAL to the object store. One policy per cluster opens exactly that for the
pods labelled as its managed service (``envhub.dev/managed-service``, a label
the manifest guard keeps off every other pod): in from the operator's namespace on the status and
PostgreSQL ports, out to the API server's addresses, and out to the object
store's ports at any address outside the deny list (its name is not an
address a policy can hold).

Egress to services ("ns/svc[:port]"). A NetworkPolicy selects pods, not
Services, so the rule allows the pods labelled ``app.kubernetes.io/name=<svc>`` in
that namespace, and the port is matched after the Service's address translation,
i.e. it must be the pods' (target) port. Services whose pods do not carry that
label are not reachable this way; allow their namespace instead.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from envhub.domain.kube.egress import EgressDenyList
from envhub.domain.kube.names import (
    MANAGED_SERVICE_LABEL,
    NAME_LABEL,
    NAMESPACE_NAME_LABEL,
    POLICY_ALLOW_DNS,
    POLICY_ALLOW_EGRESS,
    POLICY_ALLOW_INGRESS,
    POLICY_ALLOW_SAME_NAMESPACE,
    POLICY_DEFAULT_DENY,
    metadata,
)
from envhub.domain.workloads import EgressAllowlist

_SERVICE = re.compile(r"^(?P<namespace>[a-z0-9-]+)/(?P<service>[a-z0-9-]+)(?::(?P<port>[0-9]{1,5}))?$")
DNS_PORT = 53


def _unique(values: Iterable[str]) -> list[str]:
    """Values without repeats, in first-seen order (stable rendering)."""
    return list(dict.fromkeys(values))


def _namespaces_peer(names: Sequence[str]) -> dict[str, Any]:
    return {
        "namespaceSelector": {
            "matchExpressions": [
                {"key": NAMESPACE_NAME_LABEL, "operator": "In", "values": sorted(set(names))}
            ]
        }
    }


def _cidr(value: str) -> str:
    # The API server wants network notation; "10.0.0.1" or "10.0.0.1/8" become
    # "10.0.0.1/32" and "10.0.0.0/8" so the stored object equals what we send.
    return str(ipaddress.ip_network(value, strict=False))


def _policy(
    name: str,
    namespace: str,
    labels: dict[str, str],
    spec: dict[str, Any],
    pods: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A policy for ``pods`` (a pod selector; default: every pod of the namespace)."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(name, namespace, labels),
        "spec": {"podSelector": pods if pods is not None else {}, **spec},
    }


def _ip_block(cidr: str, deny: EgressDenyList) -> dict[str, Any]:
    excepted = deny.excepted(cidr)
    return {"ipBlock": {"cidr": cidr, "except": excepted}} if excepted else {"ipBlock": {"cidr": cidr}}


def _egress_rules(egress: EgressAllowlist, deny: EgressDenyList) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    cidrs = _unique(_cidr(cidr) for cidr in egress.cidrs)
    if cidrs:
        rules.append({"to": [_ip_block(cidr, deny) for cidr in cidrs]})
    if egress.namespaces:
        rules.append({"to": [_namespaces_peer(egress.namespaces)]})
    for item in _unique(egress.services):
        match = _SERVICE.match(item)
        if match is None:  # EgressAllowlist validated it already; keep mypy and readers sure
            raise ValueError(f"{item!r} is not namespace/service[:port]")
        rule: dict[str, Any] = {
            "to": [
                {
                    "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: match["namespace"]}},
                    "podSelector": {"matchLabels": {NAME_LABEL: match["service"]}},
                }
            ]
        }
        if match["port"]:
            rule["ports"] = [{"protocol": "TCP", "port": int(match["port"])}]
        rules.append(rule)
    return rules


def render_network_policies(
    *,
    namespace: str,
    labels: dict[str, str],
    egress: EgressAllowlist,
    ingress_namespaces: Sequence[str],
    dns_any_namespace: bool = True,
    dns_cidrs: Sequence[str] = (),
    deny: EgressDenyList | None = None,
) -> list[dict[str, Any]]:
    """The environment's NetworkPolicies, default deny first.

    ``egress`` must have passed :func:`~envhub.domain.kube.egress.check_egress`
    against ``deny``; blocks it allows that contain denied ones get those as
    ``except`` entries.

    ``ingress_namespaces`` are where the public-URL provider's proxies run (an
    ingress controller, a tunnel connector); on v1.20 those namespaces need the
    ``kubernetes.io/metadata.name`` label added by whoever installs them. The
    pods of managed services (``envhub.dev/managed-service``) are not theirs to
    reach: policies add up, so that one leaves them out.
    """
    policies = [
        _policy(POLICY_DEFAULT_DENY, namespace, labels, {"policyTypes": ["Ingress", "Egress"]}),
    ]
    dns_peers: list[dict[str, Any]] = [
        {
            "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }
    ]
    if dns_any_namespace:
        dns_peers.append({"namespaceSelector": {}})
    dns_peers.extend({"ipBlock": {"cidr": cidr}} for cidr in _unique(_cidr(c) for c in dns_cidrs))
    dns_ports = [{"protocol": "UDP", "port": DNS_PORT}, {"protocol": "TCP", "port": DNS_PORT}]
    policies.append(
        _policy(
            POLICY_ALLOW_DNS,
            namespace,
            labels,
            {"policyTypes": ["Egress"], "egress": [{"to": dns_peers, "ports": dns_ports}]},
        )
    )
    policies.append(
        _policy(
            POLICY_ALLOW_SAME_NAMESPACE,
            namespace,
            labels,
            {
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"from": [{"podSelector": {}}]}],
                "egress": [{"to": [{"podSelector": {}}]}],
            },
        )
    )
    if ingress_namespaces:
        policies.append(
            _policy(
                POLICY_ALLOW_INGRESS,
                namespace,
                labels,
                {"policyTypes": ["Ingress"], "ingress": [{"from": [_namespaces_peer(ingress_namespaces)]}]},
                # Not a managed service's pods (a project's Redis): only the namespace reaches those.
                pods={"matchExpressions": [{"key": MANAGED_SERVICE_LABEL, "operator": "DoesNotExist"}]},
            )
        )
    rules = _egress_rules(egress, deny if deny is not None else EgressDenyList())
    if rules:
        policies.append(
            _policy(POLICY_ALLOW_EGRESS, namespace, labels, {"policyTypes": ["Egress"], "egress": rules})
        )
    return policies


@dataclass(frozen=True, slots=True)
class ClusterNetwork:
    """What a managed CloudNativePG cluster's pods reach, and are reached from (its policy)."""

    operator_namespaces: tuple[str, ...] = ("cnpg-system",)
    api_server: tuple[str, ...] = ()  # the API server's addresses (the runtime asks the cluster)
    store_ports: tuple[int, ...] = (443,)


# The instance manager's status port (the operator polls it) and PostgreSQL's.
CLUSTER_INGRESS_PORTS = (8000, 5432)


def cluster_policy_name(cluster: str) -> str:
    return f"envhub-cnpg-{cluster}"[:63].rstrip("-")


def render_cluster_policy(
    cluster: str,
    *,
    pods: dict[str, str],
    namespace: str,
    labels: dict[str, str],
    operator_namespaces: Sequence[str],
    api_server: Sequence[str],
    store_ports: Sequence[int],
    deny: EgressDenyList | None = None,
) -> dict[str, Any]:
    """What the pods of managed CloudNativePG cluster ``cluster`` need besides the namespace's policies.

    ``pods`` are the labels its pods wear (from its ``inheritedMetadata``): the
    scratch Cluster that checks one of its backups wears them too, so the one
    policy serves both.
    """
    deny = deny if deny is not None else EgressDenyList()
    ingress: list[dict[str, Any]] = []
    if operator_namespaces:
        ingress.append(
            {
                "from": [_namespaces_peer(operator_namespaces)],
                "ports": [{"protocol": "TCP", "port": port} for port in CLUSTER_INGRESS_PORTS],
            }
        )
    egress: list[dict[str, Any]] = []
    if api_server:
        egress.append({"to": [{"ipBlock": {"cidr": cidr}} for cidr in _unique(_cidr(c) for c in api_server)]})
    if store_ports:
        egress.append(
            {
                "to": [_ip_block("0.0.0.0/0", deny), _ip_block("::/0", deny)],
                "ports": [{"protocol": "TCP", "port": port} for port in sorted(set(store_ports))],
            }
        )
    spec: dict[str, Any] = {"policyTypes": ["Ingress", "Egress"], "ingress": ingress, "egress": egress}
    return _policy(cluster_policy_name(cluster), namespace, labels, spec, pods={"matchLabels": dict(pods)})
