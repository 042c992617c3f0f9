"""Server-side apply of any kind, asking API discovery only what it does not know.

Objects are applied at the version their manifest names, so the same code
serves 1.20 and current clusters. The kinds envhub renders itself are at
versions every supported cluster serves (see ``domain/kube/render.py``), and
their paths follow from Kubernetes' API conventions: they need no discovery.

User manifests may name any kind. For those, the group version's discovery
document is fetched once per process and cluster, and shared by every Applier
(every runtime) in the process. A kind the cluster does not serve gets a clear
error instead of a 404; the answer is remembered per Applier for a while, so an
unserved kind costs one discovery refresh at most (rendering asks whether it is
namespaced, then apply asks again), while a long-lived process still notices a
CRD installed later.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from kubernetes.client import ApiClient

from envhub.domain.kube import Applied
from envhub.errors import ClusterRejected, NotFound
from envhub.runtime.kubernetes.rest import APPLY_PATCH, request

FIELD_MANAGER = "envhub"
# How long "not served" is believed before discovery is asked again.
UNSERVED_TTL = 60.0
# "v1", "apps/v1", "example.com/v1beta2": anything else is no API version and
# must not become part of a request path.
_API_VERSION = re.compile(r"^(?:[a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?v[0-9]+(?:(?:alpha|beta)[0-9]+)?$")


@dataclass(frozen=True, slots=True)
class ApiResource:
    api_version: str
    kind: str
    plural: str
    namespaced: bool

    def collection(self, namespace: str | None = None) -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        where = f"/namespaces/{namespace}" if self.namespaced and namespace else ""
        return f"{base}{where}/{self.plural}"

    def path(self, name: str, namespace: str | None = None) -> str:
        # Quoted: a name with "/" in it must fail as a bad name, not reach a subresource.
        return f"{self.collection(namespace)}/{quote(name, safe='')}"


def _known(
    api_version: str, kind: str, plural: str, namespaced: bool = True
) -> tuple[tuple[str, str], ApiResource]:
    return (api_version, kind), ApiResource(api_version, kind, plural, namespaced)


# What render.py writes, at the versions it writes them.
RENDERED_KINDS: dict[tuple[str, str], ApiResource] = dict(
    [
        _known("v1", "Namespace", "namespaces", namespaced=False),
        _known("v1", "ResourceQuota", "resourcequotas"),
        _known("v1", "LimitRange", "limitranges"),
        _known("v1", "ServiceAccount", "serviceaccounts"),
        _known("v1", "Service", "services"),
        _known("v1", "Secret", "secrets"),  # the project's secrets (deployments.render_secrets)
        _known("v1", "ConfigMap", "configmaps"),  # a workspace's git credential helper (git_credentials.py)
        _known("v1", "PersistentVolumeClaim", "persistentvolumeclaims"),  # a managed Redis' (redis.py)
        _known("apps/v1", "Deployment", "deployments"),
        _known("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies"),
        _known("networking.k8s.io/v1", "Ingress", "ingresses"),  # the ingress URL provider's
        _known("rbac.authorization.k8s.io/v1", "Role", "roles"),
        _known("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings"),
    ]
)


class _Catalog:
    """What one cluster serves, per group version, as far as this process has asked."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        # group version -> kind -> resource; None: the group version is not served.
        self.versions: dict[str, dict[str, ApiResource] | None] = {}


_catalogs: dict[str, _Catalog] = {}
_catalogs_lock = threading.Lock()


def _catalog(host: str) -> _Catalog:
    with _catalogs_lock:
        return _catalogs.setdefault(host, _Catalog())


@dataclass(frozen=True, slots=True)
class Stored:
    """An object as the cluster stored it (with its status), and whether this request created it."""

    object: dict[str, Any]
    created: bool


class Applier:
    def __init__(self, api: ApiClient, *, field_manager: str = FIELD_MANAGER) -> None:
        self.api = api
        self.field_manager = field_manager
        self.catalog = _catalog(str(api.configuration.host))
        self._unserved: dict[tuple[str, str], float] = {}

    # -- discovery -------------------------------------------------------------

    def _discover(self, api_version: str) -> dict[str, ApiResource] | None:
        path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        try:
            document = request(self.api, f"discovering {api_version}", "GET", path).body
        except NotFound:
            found: dict[str, ApiResource] | None = None
        else:
            found = {
                str(item["kind"]): ApiResource(
                    api_version, str(item["kind"]), str(item["name"]), bool(item.get("namespaced"))
                )
                for item in document.get("resources") or []
                if "/" not in str(item.get("name", "/"))  # subresources (pods/log) are not kinds
            }
        with self.catalog.lock:
            self.catalog.versions[api_version] = found
        return found

    def resource(self, api_version: str, kind: str) -> ApiResource:
        key = (api_version, kind)
        if key in RENDERED_KINDS:
            return RENDERED_KINDS[key]
        refused_at = self._unserved.get(key)
        if _API_VERSION.match(api_version) and (
            refused_at is None or time.monotonic() - refused_at > UNSERVED_TTL
        ):
            with self.catalog.lock:
                cached = self.catalog.versions.get(api_version)
            found = (cached or {}).get(kind)
            if found is not None:
                return found
            # Not asked yet, or asked before the kind existed (a CRD installed since): ask once.
            found = (self._discover(api_version) or {}).get(kind)
            if found is not None:
                return found
            self._unserved[key] = time.monotonic()
        raise ClusterRejected(
            f"this cluster does not serve {kind} in {api_version}",
            hint="Use an apiVersion the cluster supports (kubectl api-resources lists them).",
            details={"apiVersion": api_version, "kind": kind},
        )

    def is_namespaced(self, api_version: str, kind: str) -> bool | None:
        try:
            return self.resource(api_version, kind).namespaced
        except ClusterRejected:
            return None

    def _served_elsewhere(self, entry: Applied) -> ApiResource | None:
        """The kind of ``entry`` at another version of its group (its own is no longer served)."""
        if not entry.group or not _API_VERSION.match(f"{entry.group}/v1"):
            return None
        try:
            group = request(self.api, f"discovering {entry.group}", "GET", f"/apis/{entry.group}").body
        except NotFound:
            return None
        for version in group.get("versions") or []:
            api_version = str(version.get("groupVersion", ""))
            if api_version and api_version != entry.api_version:
                try:
                    return self.resource(api_version, entry.kind)
                except ClusterRejected:
                    continue
        return None

    # -- writes ----------------------------------------------------------------

    def apply(self, obj: dict[str, Any], *, field_manager: str | None = None) -> Stored:
        """Server-side apply ``obj``; unchanged objects are not modified (idempotent).

        Returns the object as the cluster stored it (with its status), so callers
        need not read back what they just wrote.
        """
        resource = self.resource(obj["apiVersion"], obj["kind"])
        metadata = obj["metadata"]
        namespace = metadata.get("namespace") if resource.namespaced else None
        answer = request(
            self.api,
            f"applying {obj['kind']} {namespace or ''}/{metadata['name']}".replace(" /", " "),
            "PATCH",
            resource.path(metadata["name"], namespace),
            query=[("fieldManager", field_manager or self.field_manager), ("force", "true")],
            body=obj,
            content_type=APPLY_PATCH,
        )
        return Stored(answer.body, created=answer.status == 201)

    def delete(self, entry: Applied, *, namespace: str) -> bool:
        """Delete what ``entry`` names; False if it was not there."""
        try:
            resource: ApiResource | None = self.resource(entry.api_version, entry.kind)
        except ClusterRejected:
            resource = self._served_elsewhere(entry)
        if resource is None:
            return False  # the kind is served at no version any more: nothing of it can exist
        try:
            request(
                self.api,
                f"deleting {entry.kind} {entry.name}",
                "DELETE",
                resource.path(entry.name, namespace),
                query=[("propagationPolicy", "Background")],
            )
        except NotFound:
            return False
        return True
