"""The API server's addresses, as the cluster reports them, for the egress deny list.

A project's egress allowlist may open address blocks (``0.0.0.0/0`` even); the
API server must never be inside what it opens (see
``domain/kube/egress.py``). Pods reach it through the ``kubernetes`` Service
in ``default``; NetworkPolicies match after that Service's address translation
on most network plugins, so both the Service's cluster IPs and its endpoints'
addresses are denied, and the address envhub itself connects to when it is an
IP literal.

Asked only when an environment's allowlist has address blocks, and remembered
for a few minutes: the addresses change when the control plane moves, rarely.
A failure to ask is an error (nothing is applied), never an allowlist that
might include the API server.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from urllib.parse import urlsplit

from kubernetes.client import ApiClient, CoreV1Api

from envhub.errors import NotFound
from envhub.runtime.kubernetes.errors import kube_json

CACHE_SECONDS = 300.0


def _host_address(url: str) -> str | None:
    host = urlsplit(url).hostname or ""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None  # a name: the Service and endpoints cover where it leads


def _as_block(address: str) -> str:
    return str(ipaddress.ip_network(address, strict=False))


class ApiServerAddresses:
    def __init__(self, api: ApiClient, *, cache_seconds: float = CACHE_SECONDS) -> None:
        self.api = api
        self.core = CoreV1Api(api)
        self.cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._cached: tuple[float, tuple[str, ...]] | None = None

    def _ask(self) -> tuple[str, ...]:
        found: list[str] = []
        service = kube_json(
            "reading the API server's Service", self.core.read_namespaced_service, "kubernetes", "default"
        )
        spec = service.get("spec") or {}
        for ip in [spec.get("clusterIP"), *(spec.get("clusterIPs") or [])]:
            if ip and ip != "None":
                found.append(_as_block(str(ip)))
        try:
            endpoints = kube_json(
                "reading the API server's endpoints",
                self.core.read_namespaced_endpoints,
                "kubernetes",
                "default",
            )
        except NotFound:
            endpoints = {}
        for subset in endpoints.get("subsets") or []:
            for address in subset.get("addresses") or []:
                if address.get("ip"):
                    found.append(_as_block(str(address["ip"])))
        own = _host_address(str(self.api.configuration.host))
        if own is not None:
            found.append(_as_block(own))
        return tuple(dict.fromkeys(found))

    def get(self) -> tuple[str, ...]:
        """The API server's addresses as /32 or /128 blocks."""
        with self._lock:
            if self._cached is not None and time.monotonic() - self._cached[0] < self.cache_seconds:
                return self._cached[1]
        addresses = self._ask()
        with self._lock:
            self._cached = (time.monotonic(), addresses)
        return addresses
