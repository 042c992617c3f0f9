"""Where people reach an environment: its public URL, and how the cluster routes to it.

Computed before the runtime applies anything, so the environment itself knows
its URL (``ENVHUB_PUBLIC_URL`` in every process and container) and a URL
provider that routes through Kubernetes objects (an Ingress) has them applied
with the environment's other objects, and removed with them.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from envhub.domain.naming import DNS_LABEL_MAX

PUBLIC_URL_VARIABLE = "ENVHUB_PUBLIC_URL"
# Host names longer than this are refused by DNS (RFC 1035, without the final dot).
DNS_NAME_MAX = 253
_DIGEST = 8  # hex characters of the (team, project, environment) digest


@dataclass(frozen=True, slots=True)
class IngressRoute:
    """An Ingress for the environment's public service, on ``host``, over TLS.

    TLS comes from exactly one of: ``cluster_issuer`` (cert-manager issues a
    certificate per host into ``tls_secret``), a wildcard certificate Secret
    named ``tls_secret``, or, with neither, the ingress controller's default
    certificate (the host is still listed under ``tls``).
    """

    host: str
    class_name: str = ""
    cluster_issuer: str = ""
    tls_secret: str = ""

    def port_host(self, port: int) -> str:
        """The host of a forwarded port of the environment (:func:`port_host`)."""
        return port_host(self.host, port)


@dataclass(frozen=True, slots=True)
class GatewayAddress:
    """envhub's gateway as the cluster reaches it (``ENVHUB_GATEWAY_INTERNAL_URL``)."""

    host: str
    port: int
    scheme: str = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"


def gateway_address(url: str) -> GatewayAddress:
    parts = urlsplit(url)
    default = 443 if parts.scheme == "https" else 80
    return GatewayAddress(
        host=parts.hostname or "", port=parts.port or default, scheme=parts.scheme or "http"
    )


@dataclass(frozen=True, slots=True)
class PublicAddress:
    url: str
    ingress: IngressRoute | None = None
    # Set for projects whose URLs need envhub sign-in on a provider that routes
    # outside envhub: the environment's namespace gets a Service pointing at
    # envhub's gateway (``domain/kube/gateway.py``), and the Ingress or tunnel
    # rule sends the host there, never straight to the environment's Service.
    gateway: GatewayAddress | None = None


def wildcard_host(*, environment: str, project: str, team: str, domain: str) -> str:
    """``<env>-<project>-<digest>.<domain>``: one label under a wildcard domain.

    One label, because a wildcard certificate covers exactly one level. The
    digest of the team, project and environment names keeps hosts distinct
    where ``-`` joins would not (``a-b``/``c`` and ``a``/``b-c``, or two teams'
    projects of one name); the readable part is cut so the label stays within
    63 characters.
    """
    digest = hashlib.sha256(f"{team}/{project}/{environment}".encode()).hexdigest()[:_DIGEST]
    readable = f"{environment}-{project}"[: DNS_LABEL_MAX - _DIGEST - 1].rstrip("-")
    return f"{readable}-{digest}.{domain}"


def port_host(host: str, port: int) -> str:
    """``<port>-<label>.<domain>``: a forwarded port's host beside the environment's ``host``.

    Still one label under the wildcard domain (what a wildcard certificate and
    a tunnel's proxied records cover), the port first, the environment's
    digest last; the readable part is cut further so the label stays within
    63 characters. The same scheme as the local provider's ``<port>.<host>``,
    in one label.
    """
    label, _, domain = host.partition(".")
    readable, _, digest = label.rpartition("-")
    room = DNS_LABEL_MAX - len(str(port)) - len(digest) - 2
    return f"{port}-{readable[:room].rstrip('-')}-{digest}.{domain}"


_PORT_LABEL = re.compile(rf"(?P<port>[1-9][0-9]{{0,4}})-.*-(?P<digest>[0-9a-f]{{{_DIGEST}}})")


def port_host_parts(host: str) -> tuple[int, str] | None:
    """The port and the environment's digest a host may name, if it has :func:`port_host`'s shape.

    A shape only: an environment whose own name starts with digits has hosts of
    it too, so the caller checks the port host it computes for the environment.
    """
    label = host.partition(".")[0]
    match = _PORT_LABEL.fullmatch(label)
    if match is None or not 1 <= int(match.group("port")) <= 65535:
        return None
    return int(match.group("port")), match.group("digest")


def host_name(host_header: str) -> str:
    """The name in a Host header: without its port, lower-case, without a final dot."""
    host = host_header.rsplit(":", 1)[0] if not host_header.startswith("[") else host_header
    return host.lower().rstrip(".")


_WILDCARD_LABEL = re.compile(rf"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?-[0-9a-f]{{{_DIGEST}}}")


def is_wildcard_host(host: str, domain: str) -> bool:
    """Whether ``host`` has the shape of :func:`wildcard_host` under ``domain``."""
    label, dot, rest = host.partition(".")
    return bool(domain) and bool(dot) and rest == domain and bool(_WILDCARD_LABEL.fullmatch(label))


# -- Cloudflare Tunnel (the ``cloudflare`` URL provider) ----------------------------------------

# A remotely-managed tunnel's DNS target: every environment's CNAME points here.
TUNNEL_TARGET_SUFFIX = ".cfargotunnel.com"
# What a tunnel configuration ends with when it has no catch-all of its own:
# cloudflared refuses a configuration whose last rule matches only some hosts.
CATCH_ALL_SERVICE = "http_status:404"


@dataclass(frozen=True, slots=True)
class DnsRecord:
    """One DNS record of the zone, as envhub reads it (envhub's or not: see ``comment``)."""

    id: str
    name: str
    type: str
    content: str
    proxied: bool = False
    comment: str = ""


def tunnel_target(tunnel_id: str) -> str:
    return f"{tunnel_id}{TUNNEL_TARGET_SUFFIX}"
