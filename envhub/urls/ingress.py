"""Ingress public URLs: ``https://<env>-<project>-<digest>.<domain>``, one Ingress per environment.

A forwarded port of the environment's workspace other than its app's (a
devcontainer's ``forwardPorts``) is ``https://<number>-<env>-<project>-<digest>.<domain>``
(:func:`~envhub.domain.public.port_host`), a rule of the same Ingress.

A wildcard DNS record (``*.<domain>``) points at the cluster's ingress
controller, so nothing is registered per environment: the address is pure
computation, and the Ingress itself is one of the environment's Kubernetes
objects (``domain/kube/ingress.py``), applied with them by server-side apply,
pruned with them and deleted with the namespace. Publishing and unpublishing
therefore have nothing left to do.
"""

from __future__ import annotations

from envhub.domain.public import GatewayAddress, IngressRoute, PublicAddress, port_host, wildcard_host
from envhub.domain.specs import EnvironmentTarget
from envhub.domain.url_access import UrlAccess
from envhub.urls.base import sign_in_gateway


class IngressUrls:
    name = "ingress"

    def __init__(
        self,
        *,
        domain: str,
        class_name: str = "",
        cluster_issuer: str = "",
        tls_secret: str = "",
        gateway: GatewayAddress | None = None,
    ) -> None:
        self.domain = domain
        self.gateway = gateway
        self.class_name = class_name
        self.cluster_issuer = cluster_issuer
        self.tls_secret = tls_secret

    def host(self, target: EnvironmentTarget) -> str:
        return wildcard_host(
            environment=target.name, project=target.project, team=target.team, domain=self.domain
        )

    def port_url(self, target: EnvironmentTarget, port: int) -> str:
        return f"https://{port_host(self.host(target), port)}/"

    def address(self, target: EnvironmentTarget) -> PublicAddress:
        host = self.host(target)
        route = IngressRoute(
            host=host,
            class_name=self.class_name,
            cluster_issuer=self.cluster_issuer,
            tls_secret=self.tls_secret,
        )
        gateway = sign_in_gateway(self.gateway) if target.url_access is UrlAccess.sign_in else None
        return PublicAddress(url=f"https://{host}/", ingress=route, gateway=gateway)

    def publish(self, target: EnvironmentTarget) -> str:
        return self.address(target).url

    def unpublish(self, target: EnvironmentTarget) -> None:
        return None  # the Ingress goes with the environment's namespace

    def published_environments(self) -> set[int]:
        return set()  # the Ingress goes with the environment's namespace

    def withdraw(self, environment_id: int) -> None:
        return None
