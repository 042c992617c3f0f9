"""User-supplied Kubernetes manifests: parsed, checked and pinned to the environment.

A project may deploy raw manifests (or a rendered Helm chart) instead of, or
next to, its container services. envhub applies them with its own identity,
which can do far more than the user should, so this module is the gate:
objects land in the environment's namespace only, carry envhub's labels (so the
reconciler finds orphans), and anything that would reach outside the namespace
or undo its isolation is refused (see :mod:`envhub.domain.kube.guards`).

API versions are taken as written; the runtime resolves them by discovery
against the cluster, so a manifest for a newer API version fails there, with
the cluster's own message.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import yaml

from envhub.domain.kube.errors import ManifestInvalid, ManifestRejected
from envhub.domain.kube.guards import check_object, pod_spec, pod_template_metadata

# (apiVersion, kind) -> True (namespaced), False (cluster-scoped), None (unknown).
# The runtime answers from API discovery; unknown kinds fall back to the list below.
IsNamespaced = Callable[[str, str], "bool | None"]

# A whole chart rendered is a few ten thousand nodes; YAML aliases can make a
# short text expand past any memory when sent as JSON.
MAX_EXPANDED_NODES = 1_000_000

# Well-known cluster-scoped kinds, for when discovery has no answer (tests, or a
# CRD not installed yet). Kinds are matched by name whatever their group: a
# namespaced custom kind of the same name is refused too, which is the safe side.
CLUSTER_SCOPED_KINDS: frozenset[str] = frozenset(
    {
        "APIService",
        "CertificateSigningRequest",
        "ClusterRole",
        "ClusterRoleBinding",
        "ComponentStatus",
        "CSIDriver",
        "CSINode",
        "CustomResourceDefinition",
        "FlowSchema",
        "IngressClass",
        "MutatingAdmissionPolicy",
        "MutatingAdmissionPolicyBinding",
        "MutatingWebhookConfiguration",
        "Namespace",
        "Node",
        "PersistentVolume",
        "PodSecurityPolicy",
        "PriorityClass",
        "PriorityLevelConfiguration",
        "RuntimeClass",
        "StorageClass",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "ValidatingWebhookConfiguration",
        "VolumeAttachment",
    }
)


class _Loader(yaml.CSafeLoader):
    """YAML as the API server reads it: no implicit dates.

    PyYAML turns an unquoted ``2024-01-01`` into a ``date`` that cannot be sent
    as JSON; the API server would have read a string.

    libyaml scans and parses (a rendered chart in a tenth of the pure-Python
    time) and refuses nesting past 1,000 levels; PyYAML's safe constructor
    builds the values, so only plain data comes out.
    """


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
# A bare "=" is YAML's "value" key type, which SafeLoader cannot construct.
_Loader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))  # type: ignore[arg-type]


def _expanded_size(node: Any, sizes: dict[int, int]) -> int:
    """Nodes ``node`` becomes once aliases are written out (as JSON will).

    Memoised by identity, so it runs in time linear in the *parsed* size even
    for a "billion laughs" document whose expansion would not fit in memory.
    """
    key = id(node)
    if key not in sizes:
        children: Iterable[Any] = ()
        if isinstance(node, dict):
            children = itertools.chain(node.keys(), node.values())
        elif isinstance(node, list):
            children = node
        sizes[key] = 1 + sum(_expanded_size(child, sizes) for child in children)
    return sizes[key]


def describe(obj: dict[str, Any]) -> str:
    """``Kind/name`` for messages."""
    name = obj.get("metadata", {}).get("name") if isinstance(obj.get("metadata"), dict) else None
    return f"{obj.get('kind', '?')}/{name or '?'}"


def _check_shape(obj: Any, where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise ManifestInvalid(
            f"{where} is a {type(obj).__name__}, not a Kubernetes object (a mapping)",
            details={"where": where},
        )
    missing = [
        field for field in ("apiVersion", "kind") if not isinstance(obj.get(field), str) or not obj[field]
    ]
    meta = obj.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
        missing.append("metadata.name")
    if missing:
        raise ManifestInvalid(
            f"{where} ({describe(obj)}) has no {', '.join(missing)}",
            details={"where": where, "missing": missing},
        )
    return obj


def _too_deep(index: int) -> ManifestInvalid:
    return ManifestInvalid(
        f"document {index}: nested too deeply (or refers to itself)", details={"document": index}
    )


def parse_manifests(text: str) -> list[dict[str, Any]]:
    """The objects of a multi-document YAML stream, empty documents skipped.

    Errors name the document by its position in the stream, counting from 1 and
    including empty documents, so it matches what a person counts in the file.
    """
    objects: list[dict[str, Any]] = []
    index = total = 0
    sizes: dict[int, int] = {}
    documents = yaml.load_all(text, Loader=_Loader)  # _Loader is a CSafeLoader
    while True:
        index += 1
        try:
            document = next(documents)
            if document is not None:
                total += _expanded_size(document, sizes)
        except StopIteration:
            break
        except RecursionError as exc:
            # An alias inside itself ("&a [*a]"), or chains of aliases thousands deep.
            raise _too_deep(index) from exc
        except yaml.YAMLError as exc:
            if "maximum nesting depth" in str(exc):  # libyaml's bound on plain nesting
                raise _too_deep(index) from exc
            mark = getattr(exc, "problem_mark", None)
            line = f", line {mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc)
            raise ManifestInvalid(
                f"document {index}{line}: not valid YAML: {problem}",
                details={"document": index, "line": mark.line + 1 if mark is not None else None},
            ) from exc
        if document is None:
            continue
        if total > MAX_EXPANDED_NODES:
            raise ManifestInvalid(
                f"document {index}: the manifests expand to more than {MAX_EXPANDED_NODES} values "
                "(YAML aliases?); split them or write them out",
                details={"document": index},
            )
        objects.append(_check_shape(document, f"document {index}"))
    return objects


def _namespaced(api_version: str, kind: str, is_namespaced: IsNamespaced | None) -> bool:
    answer = is_namespaced(api_version, kind) if is_namespaced is not None else None
    if answer is not None:
        return answer
    # "Cluster*" (ClusterIssuer, ClusterSecretStore, ClusterPolicy...) is the
    # usual naming of cluster-scoped custom kinds.
    return kind not in CLUSTER_SCOPED_KINDS and not kind.startswith("Cluster")


def _merge_labels(meta: dict[str, Any], labels: dict[str, str]) -> None:
    current = meta.get("labels")
    # envhub's labels win: the reconciler finds and cleans up objects by them.
    meta["labels"] = {**(current if isinstance(current, dict) else {}), **labels}


def _default_protocols(obj: dict[str, Any]) -> None:
    # v1.20's server-side apply refuses a Service port without the "protocol"
    # key of its list-map; the API server would default it to TCP anyway, so
    # say so here (container ports too, harmlessly, for older schemas' sake).
    def listed(value: Any) -> list[Any]:
        return value if isinstance(value, list) else []  # odd shapes: the API server's to reject

    ports: list[Any] = []
    if obj["kind"] == "Service" and isinstance(obj.get("spec"), dict):
        ports += listed(obj["spec"].get("ports"))
    spec = pod_spec(obj)
    if spec is not None:
        for field in ("initContainers", "containers"):
            for container in listed(spec.get(field)):
                if isinstance(container, dict):
                    ports += listed(container.get("ports"))
    for port in ports:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")


def _set_variables(obj: dict[str, Any], variables: Mapping[str, str]) -> None:
    """Put envhub's own variables first in every container's env, replacing any of the same name.

    First, so the manifest's own values can refer to them as ``$(NAME)``.
    """
    spec = pod_spec(obj)
    if spec is None or not variables:
        return
    ours = [{"name": name, "value": value} for name, value in variables.items()]
    for field in ("initContainers", "containers"):
        containers = spec.get(field)
        for container in containers if isinstance(containers, list) else []:
            if not isinstance(container, dict):
                continue
            env = container.get("env")
            theirs = [
                entry
                for entry in (env if isinstance(env, list) else [])
                if not (isinstance(entry, dict) and entry.get("name") in variables)
            ]
            container["env"] = [*ours, *theirs]


def _check(obj: dict[str, Any], *, namespace: str | None, is_namespaced: IsNamespaced | None) -> None:
    what = describe(obj)
    if not _namespaced(obj["apiVersion"], obj["kind"], is_namespaced):
        raise ManifestRejected(
            f"{what} is cluster-scoped; an environment may only create objects in its own namespace",
            details={"object": what, "reason": "cluster_scoped", "field": "kind"},
        )
    meta = obj["metadata"]
    if namespace is not None and meta.get("namespace") not in (None, "", namespace):
        raise ManifestRejected(
            f"{what} names namespace {meta['namespace']!r}; objects may only go to {namespace!r}",
            details={
                "object": what,
                "reason": "other_namespace",
                "namespace": meta["namespace"],
                "field": "metadata.namespace",
            },
        )
    check_object(obj, namespace=namespace)


def check_manifests(objects: Iterable[dict[str, Any]]) -> None:
    """The checks of :func:`scope_manifests` that need no namespace, for a project's defaults.

    Refuses early, when a project is saved, what every environment of it would
    refuse at deploy time; fields naming a namespace are checked then.
    """
    for position, obj in enumerate(objects, start=1):
        _check(_check_shape(obj, f"object {position}"), namespace=None, is_namespaced=_known_scope)


def _known_scope(api_version: str, kind: str) -> bool:
    # Without discovery only the well-known kinds are refused as cluster-scoped:
    # the "Cluster*" guess would refuse namespaced custom kinds (CloudNativePG's
    # Cluster) that the cluster itself will answer for at deploy time.
    return kind not in CLUSTER_SCOPED_KINDS


def scope_manifests(
    objects: Iterable[dict[str, Any]],
    *,
    namespace: str,
    labels: dict[str, str],
    is_namespaced: IsNamespaced | None = None,
    variables: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Copies of ``objects`` placed in ``namespace`` with ``labels`` merged in.

    Pod templates of the built-in workload kinds get the labels too, so every
    pod is found by them, and their containers get envhub's ``variables``
    (``ENVHUB_PUBLIC_URL`` and the like), as envhub's own containers do. Ports
    without a protocol get ``TCP`` (the API server's default, which v1.20's
    server-side apply does not fill in).

    Raises :class:`ManifestRejected` for cluster-scoped kinds, objects naming
    another namespace, and objects that would weaken the environment's
    isolation; :class:`ManifestInvalid` for malformed objects. The input is
    never modified.
    """
    scoped: list[dict[str, Any]] = []
    for position, original in enumerate(objects, start=1):
        obj = copy.deepcopy(_check_shape(original, f"object {position}"))
        _check(obj, namespace=namespace, is_namespaced=is_namespaced)
        meta = obj["metadata"]
        meta["namespace"] = namespace
        _merge_labels(meta, labels)
        template_meta = pod_template_metadata(obj)
        if template_meta is not None:
            _merge_labels(template_meta, labels)
        _default_protocols(obj)
        _set_variables(obj, variables or {})
        scoped.append(obj)
    return scoped
