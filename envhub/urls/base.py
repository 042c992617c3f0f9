"""The public-URL port: give an environment a URL people can open.

``address`` is pure: the URL (and, for providers that route through the
cluster, the Ingress the runtime applies with the environment's other objects)
is known before anything runs, so the environment is told its own URL
(``ENVHUB_PUBLIC_URL``). ``publish`` is idempotent and returns the URL;
``unpublish`` of an unknown environment returns quietly.

A provider that registers something outside the environment's own objects (a
DNS record, a tunnel rule) lists the environments it has published for
(``published_environments``), so the reconciler can ``withdraw`` what belongs
to no environment; providers whose routes live and die with the environment's
namespace (local, ingress) list nothing.
"""

from __future__ import annotations

from typing import Protocol

from envhub.domain.public import GatewayAddress, PublicAddress
from envhub.domain.specs import EnvironmentTarget
from envhub.errors import ConfigurationError


class UrlProvider(Protocol):
    name: str

    def address(self, target: EnvironmentTarget) -> PublicAddress:
        """Where the environment will be reachable; no I/O, the same answer every time."""

    def port_url(self, target: EnvironmentTarget, port: int) -> str:
        """The public URL of a forwarded port of the environment's (a devcontainer's ``forwardPorts``)
        other than its app's: the environment's host with the port's number in front (``<port>.`` or
        ``<port>-``). Pure, like :meth:`address`; :meth:`publish` routes it where the runtime relays it.
        """

    def publish(self, target: EnvironmentTarget) -> str:
        """Make the environment reachable; return its public URL.

        ``target.workspace`` is what the runtime applied of the repository's
        devcontainer.json, if anything: the workspace may serve the app, and each
        forwarded port with a URL of its own is routed too. A port no longer
        forwarded is no longer routed.
        """

    def unpublish(self, target: EnvironmentTarget) -> None:
        """Stop routing to the environment. Quiet when nothing is published."""

    def published_environments(self) -> set[int]:
        """Ids of the environments the provider holds something for outside the runtime."""

    def withdraw(self, environment_id: int) -> None:
        """Remove what the provider holds for an environment known only by id. Quiet when none."""


def sign_in_gateway(gateway: GatewayAddress | None) -> GatewayAddress:
    """Where a sign-in project's traffic goes instead of its Service: envhub's gateway (must be set)."""
    if gateway is None:
        raise ConfigurationError(
            "this project's URLs need envhub sign-in, so they are routed through envhub's gateway, "
            "but ENVHUB_GATEWAY_INTERNAL_URL (where the cluster reaches it) is not set",
            hint="Set ENVHUB_GATEWAY_INTERNAL_URL (the Helm chart does), or make the project's URLs public.",
        )
    return gateway
