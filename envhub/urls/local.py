"""Local public URLs: ``http://<env>.<project>.<team>.localhost:<port>``.

A forwarded port of the environment other than its app's (a devcontainer's
``forwardPorts``) is ``http://<number>.<env>.<project>.<team>.localhost:<port>``.

Browsers resolve every ``*.localhost`` name to loopback, so no DNS is needed:
envhub's own gateway (``api/gateway.py``) reads the Host header and proxies to
the environment. Publishing is therefore pure computation.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from envhub.domain.naming import local_host
from envhub.domain.public import PublicAddress, host_name
from envhub.domain.specs import EnvironmentTarget


@dataclass(frozen=True, slots=True)
class HostRoute:
    environment: str
    project: str
    team: str
    port: int | None = None  # a forwarded port of the environment; None: its app


class LocalUrls:
    name = "local"

    def __init__(self, *, base_url: str, domain: str = "localhost") -> None:
        parts = urlsplit(base_url)
        self._scheme = parts.scheme
        self._port = parts.port
        self.domain = domain

    def url_for(self, *, environment: str, project: str, team: str, forwarded: int | None = None) -> str:
        host = local_host(environment=environment, project=project, team=team, domain=self.domain)
        if forwarded is not None:
            host = f"{forwarded}.{host}"
        port = f":{self._port}" if self._port else ""
        return f"{self._scheme}://{host}{port}/"

    def port_url(self, target: EnvironmentTarget, port: int) -> str:
        return self.url_for(environment=target.name, project=target.project, team=target.team, forwarded=port)

    def address(self, target: EnvironmentTarget) -> PublicAddress:
        return PublicAddress(self.url_for(environment=target.name, project=target.project, team=target.team))

    def publish(self, target: EnvironmentTarget) -> str:
        return self.address(target).url

    def unpublish(self, target: EnvironmentTarget) -> None:
        return None

    def route(self, host_header: str) -> HostRoute | None:
        """The environment a Host header points at, or None for envhub itself."""
        host = host_name(host_header)
        suffix = "." + self.domain
        if not host.endswith(suffix):
            return None
        labels = host[: -len(suffix)].split(".")
        port: int | None = None
        if len(labels) == 4 and labels[0].isdigit() and len(labels[0]) <= 5 and 1 <= int(labels[0]) <= 65535:
            port = int(labels.pop(0))
        if len(labels) != 3 or not all(labels):
            return None
        return HostRoute(environment=labels[0], project=labels[1], team=labels[2], port=port)

    def published_environments(self) -> set[int]:
        return set()  # the gateway routes by name: nothing is registered

    def withdraw(self, environment_id: int) -> None:
        return None
