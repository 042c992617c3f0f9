"""Server-side apply through discovery, so the same code serves 1.20 and current clusters.

The dynamic client learns which API versions the cluster serves (cached per
process), so objects are applied at the version the cluster has and user
manifests with an unserved version get a clear error instead of a 404.
"""

from __future__ import annotations

import threading
from typing import Any

from kubernetes.client import ApiClient
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ResourceNotFoundError
from kubernetes.dynamic.resource import Resource

from envhub.errors import ClusterRejected
from envhub.runtime.kubernetes.errors import kube_call

FIELD_MANAGER = "envhub"


class Applier:
    def __init__(self, api: ApiClient, *, field_manager: str = FIELD_MANAGER) -> None:
        self.api = api
        self.field_manager = field_manager
        self._dynamic: DynamicClient | None = None
        self._lock = threading.Lock()
        self._resources: dict[tuple[str, str], Resource] = {}

    @property
    def dynamic(self) -> DynamicClient:
        with self._lock:
            if self._dynamic is None:
                self._dynamic = kube_call("discovering the cluster's APIs", DynamicClient, self.api)
            return self._dynamic

    def resource(self, api_version: str, kind: str) -> Resource:
        key = (api_version, kind)
        if key not in self._resources:
            self._resources[key] = kube_call(
                f"looking up {kind} ({api_version})", self._lookup, api_version, kind
            )
        return self._resources[key]

    def _lookup(self, api_version: str, kind: str) -> Resource:
        # Translated here, inside kube_call: kube_call turns any other exception
        # into a generic runtime_error, which would hide what the user must fix.
        try:
            found: Resource = self.dynamic.resources.get(api_version=api_version, kind=kind)
            return found
        except ResourceNotFoundError as exc:
            raise ClusterRejected(
                f"this cluster does not serve {kind} in {api_version}",
                hint="Use an apiVersion the cluster supports (kubectl api-resources lists them).",
                details={"apiVersion": api_version, "kind": kind},
            ) from exc

    def is_namespaced(self, api_version: str, kind: str) -> bool | None:
        try:
            return bool(self.resource(api_version, kind).namespaced)
        except ClusterRejected:
            return None

    def served(self, api_version: str, kind: str) -> bool:
        return self.is_namespaced(api_version, kind) is not None

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply ``obj``; unchanged objects are not modified (idempotent).

        Returns the object as the cluster stored it (with its status), so callers
        need not read back what they just wrote.
        """
        resource = self.resource(obj["apiVersion"], obj["kind"])
        metadata = obj["metadata"]
        applied = kube_call(
            f"applying {obj['kind']} {metadata.get('namespace', '')}/{metadata['name']}".replace(" /", " "),
            resource.server_side_apply,
            body=obj,
            name=metadata["name"],
            namespace=metadata.get("namespace") if resource.namespaced else None,
            field_manager=self.field_manager,
            force_conflicts=True,
        )
        stored: dict[str, Any] = applied.to_dict() if hasattr(applied, "to_dict") else dict(applied or {})
        return stored
