"""Requests the apiserver served, read from its audit log: one way of counting for every client.

The test cluster runs with ``--audit-log-path`` (``TestCluster(audit_log=...)``,
Metadata level, one event per finished request). Each event names the client
by its user agent, so envhub's workers (the Kubernetes Python client,
``OpenAPI-Generator/...``), helm (``Helm/...``) and the cluster's own
components (controller-manager, the test kubelet) are told apart without a
proxy in anyone's path, and a watch counts once, when it ends.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

AGENTS = {"OpenAPI-Generator/": "envhub", "Helm/": "helm"}


@dataclass(frozen=True)
class Served:
    agent: str  # envhub, helm, or cluster
    verb: str  # the apiserver's: get, list, watch, create, update, patch, delete; discover
    resource: str  # with its subresource (pods/status); the path for discovery
    namespace: str | None
    at: float  # when the request was received, seconds since the epoch

    @property
    def label(self) -> str:
        return f"{self.verb} {self.resource}" if self.verb != "discover" else "discover"


def _agent(user_agent: str) -> str:
    return next((name for prefix, name in AGENTS.items() if user_agent.startswith(prefix)), "cluster")


def parse(line: str) -> Served | None:
    event = json.loads(line)
    if event.get("stage") != "ResponseComplete":
        return None
    ref = event.get("objectRef") or {}
    resource = ref.get("resource")
    if resource is None:
        verb, resource = "discover", event.get("requestURI", "").split("?")[0]
    else:
        verb = event.get("verb", "")
        if ref.get("subresource"):
            resource = f"{resource}/{ref['subresource']}"
    at = datetime.fromisoformat(event["requestReceivedTimestamp"].replace("Z", "+00:00")).timestamp()
    return Served(_agent(event.get("userAgent", "")), verb, resource, ref.get("namespace"), at)


class AuditLog:
    """The log as it grows: :meth:`between` reads what was appended since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._served: list[Served] = []

    def _catch_up(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb") as log:
            log.seek(self._offset)
            data = log.read()
        complete = data.rfind(b"\n") + 1
        self._offset += complete
        for line in data[:complete].decode().splitlines():
            if line.strip() and (served := parse(line)) is not None:
                self._served.append(served)

    def between(self, start: float, end: float, agent: str) -> list[Served]:
        self._catch_up()
        return [s for s in self._served if s.agent == agent and start <= s.at <= end]


def by_label(served: list[Served]) -> Counter[str]:
    return Counter(s.label for s in served)
