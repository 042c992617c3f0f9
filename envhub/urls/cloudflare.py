"""Cloudflare Tunnel public URLs: ``https://<env>-<project>-<digest>.<zone>``, one tunnel per cluster.

The cluster runs one ``cloudflared`` connector (envhub's Helm chart deploys it
from the tunnel's token); Cloudflare terminates TLS and sends each host's
requests down the tunnel, where the tunnel's configuration (remotely managed,
one document) routes the host to a Service in the cluster. Publishing an
environment therefore makes two things at Cloudflare:

* an ingress rule in the tunnel's configuration, ``<host>`` →
  ``http://<service>.<namespace>.svc:<port>`` (the environment's public
  Service), kept before the configuration's final catch-all
  (``http_status:404`` unless the operator put another one there);
* a proxied CNAME record ``<host>`` → ``<tunnel id>.cfargotunnel.com`` in the
  zone, commented ``envhub environment <id>: ...``.

An environment whose workspace forwards ports (a devcontainer's ``forwardPorts``)
gets the same two things for each port with a URL of its own, on the port's host
(``<number>-<env>-<project>-<digest>.<zone>``, :func:`~envhub.domain.public.port_host`)
to the workspace's Service at that port, the record's comment naming the port and
its label. A port no longer forwarded loses its rule and record at the next publish.

Both are recognisably envhub's and name the environment: the record by its
comment (and its target, this cluster's tunnel), the rule by its service,
which points into the environment's namespace, whose name only envhub gives
and which ends with the environment's id (``domain/kube/names.py``). So
:meth:`CloudflareUrls.published_environments` lists what envhub has published
and the reconciler withdraws what belongs to no environment; records and rules
that are not envhub's are never touched (a host already held by one is
refused: ``cloudflare_host_taken``).

The tunnel's configuration is one document that Cloudflare replaces whole and
without any precondition (no ETag, no If-Match: its ``version`` only counts),
so an optimistic read-modify-write cannot even notice that it overwrote another
worker's rule. Every change to it is made under a lock instead (Redis, shared
by every worker, with an expiry so a killed worker cannot hold it), and skipped
when it would change nothing. DNS records are one per host and need no lock.

The provider talks to Cloudflare through :class:`CloudflareApi`, which
``integrations/cloudflare.py`` implements with the official SDK; the wiring
hands it in.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

from envhub.domain.kube.gateway import GATEWAY_SERVICE
from envhub.domain.kube.names import NAMESPACE_PREFIX, is_namespace_of, namespace_for
from envhub.domain.kube.workspace import environment_endpoint, own_url_ports
from envhub.domain.public import (
    CATCH_ALL_SERVICE,
    DnsRecord,
    GatewayAddress,
    PublicAddress,
    port_host,
    tunnel_target,
    wildcard_host,
)
from envhub.domain.specs import EnvironmentTarget
from envhub.domain.url_access import UrlAccess
from envhub.errors import CloudflareHostTaken, CloudflareUnavailable
from envhub.urls.base import sign_in_gateway

# Every DNS record envhub makes has a comment starting so, then the environment's id.
COMMENT_PREFIX = "envhub environment "
_COMMENT = re.compile(r"^envhub environment (\d+)(?!\d)")
_COMMENT_MAX = 100  # Cloudflare's limit on free zones
# http://<service>.<namespace>.svc:<port>, the namespace ending with -<environment id>.
_SERVICE = re.compile(
    r"^http://[a-z0-9]([-a-z0-9]*[a-z0-9])?\.(?P<ns>[a-z0-9][-a-z0-9]*-(?P<id>\d+))\.svc:\d+$"
)

Rule = dict[str, Any]
Lock = Callable[[str], AbstractContextManager[object]]


class CloudflareApi(Protocol):
    """What the provider needs of Cloudflare (``integrations/cloudflare.CloudflareClient``)."""

    def tunnel_id(self) -> str: ...

    def tunnel_config(self) -> dict[str, Any]: ...

    def put_tunnel_config(self, config: dict[str, Any]) -> None: ...

    def dns_records(
        self, *, name: str = "", comment_prefix: str = "", content: str = "", type: str = "CNAME"
    ) -> list[DnsRecord]: ...

    def create_cname(self, *, name: str, target: str, comment: str, proxied: bool = True) -> DnsRecord: ...

    def delete_record(self, record_id: str) -> None: ...


def process_lock() -> Lock:
    """A lock for one process (tests, a single worker); the wiring uses Redis's across workers."""
    locks: dict[str, threading.Lock] = {}
    guard = threading.Lock()

    @contextmanager
    def hold(name: str) -> Iterator[None]:
        with guard:
            lock = locks.setdefault(name, threading.Lock())
        with lock:
            yield

    return hold


def record_comment(target: EnvironmentTarget, *, port: int | None = None, label: str = "") -> str:
    """``envhub environment <id>: <env> of <team>/<project>``, and the forwarded port a record is for."""
    comment = f"{COMMENT_PREFIX}{target.id}: {target.name} of {target.team}/{target.project}"
    if port is not None:
        comment += f", port {port}" + (f" ({label})" if label else "")
    return comment[:_COMMENT_MAX]


def record_environment(record: DnsRecord) -> int | None:
    """The environment a DNS record was made for, if envhub made it."""
    match = _COMMENT.match(record.comment)
    return int(match.group(1)) if match else None


def rule_environment(rule: Rule, *, prefix: str = NAMESPACE_PREFIX) -> int | None:
    """The environment a tunnel ingress rule routes to, if envhub made it."""
    match = _SERVICE.match(str(rule.get("service", "")))
    if match is None or not rule.get("hostname"):
        return None
    environment_id = int(match.group("id"))
    return environment_id if is_namespace_of(match.group("ns"), environment_id, prefix=prefix) else None


class CloudflareUrls:
    name = "cloudflare"

    def __init__(
        self,
        *,
        api: CloudflareApi,
        zone: str,
        lock: Lock | None = None,
        namespace_prefix: str = NAMESPACE_PREFIX,
        gateway: GatewayAddress | None = None,
    ) -> None:
        self.api = api
        self.gateway = gateway
        self.domain = zone
        self._lock = lock or process_lock()
        self._prefix = namespace_prefix

    def host(self, target: EnvironmentTarget) -> str:
        return wildcard_host(
            environment=target.name, project=target.project, team=target.team, domain=self.domain
        )

    def address(self, target: EnvironmentTarget) -> PublicAddress:
        gateway = sign_in_gateway(self.gateway) if target.url_access is UrlAccess.sign_in else None
        return PublicAddress(url=f"https://{self.host(target)}/", gateway=gateway)

    # -- publish and unpublish --------------------------------------------------------------------

    def port_url(self, target: EnvironmentTarget, port: int) -> str:
        return f"https://{port_host(self.host(target), port)}/"

    def publish(self, target: EnvironmentTarget) -> str:
        """Route the environment's host (and each forwarded port's) down the tunnel, each with its record.

        ``target.workspace`` is the workspace the runtime applied (the job hands it
        over): it may serve the app, and its forwarded ports get hosts of their own.
        """
        address = self.address(target)
        url = address.url
        routes = self._routes(target, address)
        if not routes:  # nothing to route to: nothing published
            self.unpublish(target)
            return url
        tunnel = tunnel_target(self.api.tunnel_id())
        held = {host: self.api.dns_records(name=host) for host in routes}
        for host, records in held.items():
            foreign = [r for r in records if not self._ours(r, tunnel)]
            if foreign:
                raise CloudflareHostTaken(
                    f"the DNS name {host} is held by a {foreign[0].type} record envhub did not make "
                    f"({foreign[0].content})",
                    details={"host": host},
                )
        services = {host: service for host, (service, _comment) in routes.items()}
        self._edit_rules(lambda rules: _with_rules(rules, services, target.id, self._prefix))
        for host, records in held.items():
            mine = [r for r in records if record_environment(r) == target.id and r.proxied]
            for stale in (r for r in records if r not in mine[:1]):  # another environment's, or not proxied
                self.api.delete_record(stale.id)
            if not mine:
                self.api.create_cname(name=host, target=tunnel, comment=routes[host][1])
        # Records of the environment's on hosts it no longer has (a port no longer forwarded).
        for record in self._records_of(target.id, tunnel):
            if record.name not in routes:
                self.api.delete_record(record.id)
        return url

    def _routes(self, target: EnvironmentTarget, address: PublicAddress) -> dict[str, tuple[str, str]]:
        """Each host of the environment -> the tunnel rule's service and the DNS record's comment."""
        namespace = namespace_for(target, prefix=self._prefix)
        endpoint = environment_endpoint(target, namespace=namespace)
        ports = own_url_ports(target, namespace=namespace)
        labels = {p.port: p.label for p in target.workspace.config.ports} if target.workspace else {}
        if address.gateway is not None:  # the gateway asks for the pass, then relays (every host)
            relay = f"http://{GATEWAY_SERVICE}.{namespace}.svc:{address.gateway.port}"
            services = dict.fromkeys(ports, relay)
        else:
            relay = f"http://{endpoint.host}:{endpoint.port}" if endpoint is not None else ""
            services = {port: f"http://{served.host}:{served.port}" for port, served in ports.items()}
        routes: dict[str, tuple[str, str]] = {}
        if endpoint is not None:
            routes[self.host(target)] = (relay, record_comment(target))
        for port, service in services.items():
            comment = record_comment(target, port=port, label=labels.get(port, ""))
            routes[port_host(self.host(target), port)] = (service, comment)
        return routes

    def unpublish(self, target: EnvironmentTarget) -> None:
        self.withdraw(target.id)

    # -- what envhub has published (the reconciler's orphan sweep) --------------------------------

    def published_environments(self) -> set[int]:
        """Ids of the environments with a DNS record or a tunnel rule of envhub's at Cloudflare."""
        tunnel = tunnel_target(self.api.tunnel_id())
        ids = {
            environment_id
            for record in self.api.dns_records(comment_prefix=COMMENT_PREFIX, content=tunnel)
            if (environment_id := record_environment(record)) is not None
        }
        rules = self.api.tunnel_config().get("ingress") or []
        ids |= {
            environment_id
            for rule in rules
            if (environment_id := rule_environment(rule, prefix=self._prefix)) is not None
        }
        return ids

    def withdraw(self, environment_id: int) -> None:
        """Remove the environment's DNS records and tunnel rules; quiet when there are none."""
        tunnel = tunnel_target(self.api.tunnel_id())
        for record in self._records_of(environment_id, tunnel):
            self.api.delete_record(record.id)
        self._edit_rules(
            lambda rules: [r for r in rules if rule_environment(r, prefix=self._prefix) != environment_id]
        )

    # -- the tunnel's configuration -----------------------------------------------------------------

    def _records_of(self, environment_id: int, tunnel: str) -> list[DnsRecord]:
        """The environment's DNS records (every host of it) pointing at this cluster's tunnel."""
        found = self.api.dns_records(comment_prefix=f"{COMMENT_PREFIX}{environment_id}", content=tunnel)
        return [record for record in found if record_environment(record) == environment_id]

    def _ours(self, record: DnsRecord, tunnel: str) -> bool:
        return record_environment(record) is not None and record.content == tunnel

    def _edit_rules(self, change: Callable[[list[Rule]], list[Rule]]) -> None:
        """Read, change and replace the tunnel's ingress rules under the tunnel's lock."""
        name = f"cloudflare-tunnel:{self.api.tunnel_id()}"
        try:
            with self._lock(name):
                config = self.api.tunnel_config()
                ingress: list[Rule] = list(config.get("ingress") or [])
                rules, catch_all = _split(ingress)
                kept = change(rules)
                wanted = [*kept, catch_all]
                if wanted != ingress and (kept or ingress):  # an empty document stays empty
                    self.api.put_tunnel_config({**config, "ingress": wanted})
        except TimeoutError as exc:
            raise CloudflareUnavailable(
                f"could not take the lock on the tunnel's configuration: {exc}",
                hint="Another worker holds it for longer than expected; envhub retries.",
            ) from exc


def _split(ingress: list[Rule]) -> tuple[list[Rule], Rule]:
    """The rules before the catch-all, and the catch-all (the operator's, else ``http_status:404``)."""
    if ingress and not ingress[-1].get("hostname") and not ingress[-1].get("path"):
        return ingress[:-1], ingress[-1]
    return ingress, {"service": CATCH_ALL_SERVICE}


def _with_rules(rules: list[Rule], wanted: dict[str, str], environment_id: int, prefix: str) -> list[Rule]:
    """``rules`` with exactly the environment's rules ``wanted`` (host -> service): the ones it has
    kept in place, new ones after the last of them (else at the end), the ones it no longer
    wants dropped."""
    result: list[Rule] = []
    placed: set[str] = set()
    last = -1
    for rule in rules:
        host = rule.get("hostname")
        owner = rule_environment(rule, prefix=prefix)
        if host in wanted and owner is None:
            raise CloudflareHostTaken(
                f"the tunnel already routes {host} to {rule.get('service')}, a rule envhub did not make",
                details={"host": host},
            )
        if owner == environment_id or host in wanted:
            if host in wanted and host not in placed:
                result.append({"hostname": host, "service": wanted[host]})
                placed.add(str(host))
                last = len(result) - 1
            continue
        result.append(rule)
    added = [{"hostname": host, "service": service} for host, service in wanted.items() if host not in placed]
    at = last + 1 if last >= 0 else len(result)
    return [*result[:at], *added, *result[at:]]
