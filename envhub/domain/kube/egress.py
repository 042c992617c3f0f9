"""The operator's egress deny list: what a project's allowlist can never open.

A project asks for egress (:class:`~envhub.domain.workloads.EgressAllowlist`);
some destinations are never the project's to ask for, whoever approves it:

* the cloud metadata addresses (instance credentials, user data):
  169.254.169.254 (AWS, GCP, Azure, OpenStack, ...), fd00:ec2::254 (AWS over
  IPv6), 100.100.100.200 (Alibaba Cloud);
* the API server, by its addresses as the cluster reports them (the
  ``kubernetes`` Service and its endpoints; the runtime looks them up);
* ``kube-system`` and envhub's own namespace, and whatever else the operator
  adds (``ENVHUB_KUBE_EGRESS_DENY_CIDRS`` / ``_NAMESPACES``).

An allowlist entry inside a denied block (or naming a denied namespace, or a
service in one, or an IPv4 block written as IPv6) is refused with
``egress_denied``. An allowlist block that
merely contains a denied address, such as ``0.0.0.0/0``, is allowed with the
denied addresses cut out (NetworkPolicy ``ipBlock.except``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from envhub.domain.kube.errors import EgressDenied
from envhub.domain.workloads import EgressAllowlist

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

METADATA_CIDRS = ("169.254.169.254/32", "fd00:ec2::254/128", "100.100.100.200/32")
DENIED_NAMESPACES = ("kube-system",)
# IPv4 addresses written as IPv6 (::ffff:169.254.169.254).
IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
# The API server's own Service.
API_SERVICE = ("default", "kubernetes")


def network(value: str) -> Network:
    # "10.0.0.1" and "10.0.0.1/8" become "10.0.0.1/32" and "10.0.0.0/8".
    return ipaddress.ip_network(value, strict=False)


@dataclass(frozen=True, slots=True)
class EgressDenyList:
    """Blocks and namespaces no allowlist opens; the defaults are always part of it."""

    cidrs: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        cidrs = tuple(dict.fromkeys(str(network(c)) for c in (*METADATA_CIDRS, *self.cidrs)))
        object.__setattr__(self, "cidrs", cidrs)
        namespaces = tuple(dict.fromkeys((*DENIED_NAMESPACES, *self.namespaces)))
        object.__setattr__(self, "namespaces", namespaces)

    def extended(self, *, cidrs: Iterable[str] = (), namespaces: Iterable[str] = ()) -> EgressDenyList:
        return EgressDenyList(cidrs=(*self.cidrs, *cidrs), namespaces=(*self.namespaces, *namespaces))

    def excepted(self, cidr: str) -> list[str]:
        """The denied blocks strictly inside ``cidr``, for its ``ipBlock.except``."""
        allowed = network(cidr)
        inside = []
        for denied in map(network, self.cidrs):
            if denied.version == allowed.version and denied != allowed and denied.subnet_of(allowed):  # type: ignore[arg-type]
                inside.append(str(denied))
        return inside


def _denied_block(cidr: str, deny: EgressDenyList) -> str | None:
    allowed = network(cidr)
    if isinstance(allowed, ipaddress.IPv6Network) and allowed.subnet_of(IPV4_MAPPED):
        # Network plugins written in Go read ::ffff:a.b.c.d as the IPv4 address,
        # and an ``except`` cannot cut IPv4 out of an IPv6 block: refused whole.
        return str(IPV4_MAPPED)
    for denied in map(network, deny.cidrs):
        if denied.version == allowed.version and allowed.subnet_of(denied):  # type: ignore[arg-type]
            return str(denied)
    return None


def check_egress(egress: EgressAllowlist, deny: EgressDenyList) -> None:
    """Raise :class:`EgressDenied` for the first allowlist entry the deny list forbids."""
    for index, cidr in enumerate(egress.cidrs):
        block = _denied_block(cidr, deny)
        if block is not None:
            raise EgressDenied(
                f"egress to {cidr} is not allowed: it lies in {block}, which the platform denies",
                details={"field": f"egress.cidrs[{index}]", "value": cidr, "denied": block},
            )
    for index, namespace in enumerate(egress.namespaces):
        if namespace in deny.namespaces:
            raise EgressDenied(
                f"egress to namespace {namespace} is not allowed: the platform denies it",
                details={"field": f"egress.namespaces[{index}]", "value": namespace, "denied": namespace},
            )
    for index, service in enumerate(egress.services):
        namespace, _, rest = service.partition("/")
        name = rest.partition(":")[0]
        if namespace in deny.namespaces or (namespace, name) == API_SERVICE:
            denied = "the API server" if (namespace, name) == API_SERVICE else f"namespace {namespace}"
            raise EgressDenied(
                f"egress to {service} is not allowed: the platform denies {denied}",
                details={"field": f"egress.services[{index}]", "value": service, "denied": denied},
            )
