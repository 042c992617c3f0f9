"""Checking rendered objects against Kubernetes' own schemas before anything is applied.

A misspelled field (``replica:``) is dropped silently by a lenient client and
only noticed when the application misbehaves; a wrong type is refused by the
API server halfway through applying a release. Both are caught here, offline,
with the JSON schemas ``kubernetes-validate`` ships for each Kubernetes minor
version, in strict mode (unknown fields are problems), so a deployment fails
before it touches the cluster and says which object and which field.

The library ships schemas for a range of versions: a cluster outside it is
checked against the nearest one, and the report says so.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import referencing
from cachetools import LRUCache
from kubernetes_validate import utils as kv
from packaging.version import Version

from envhub.errors import ValidationFailed

_KUBE_VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.\d+)?(?:[-+].*)?$")
_MAX_PROBLEMS_PER_OBJECT = 50
# Objects already found valid, by schema version and content: staging's and production's objects
# are mostly the same, and a release mostly repeats the last one's. Only valid ones are kept
# (a problem's wording names the object's place in its document), at most this many.
_VALID: LRUCache[tuple[str, str], bool] = LRUCache(maxsize=8192)
_VALID_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with one object: ``object`` is ``Kind/name``, ``field`` a path such as
    ``spec.template.spec.containers[0].image`` (``""`` for the object itself)."""

    object: str
    field: str
    message: str


@dataclass(frozen=True, slots=True)
class SchemaReport:
    """What :func:`validate` found.

    ``problems`` are errors: the objects would be refused or silently changed.
    ``unvalidated`` names the objects (``Kind/name (apiVersion)``) no shipped
    schema covers (custom resources, or API versions the schema version does
    not have): not errors. ``schema_version`` (``1.25``) is the Kubernetes
    version whose schemas were used, and ``note`` says why it differs from the
    cluster's when it does (``""`` otherwise).
    """

    problems: list[Problem]
    unvalidated: list[str] = field(default_factory=list)
    schema_version: str = ""
    note: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems


def shipped_versions() -> list[str]:
    """The Kubernetes minor versions (``1.25``, ...) whose schemas are available, oldest first."""
    return [f"{v.major}.{v.minor}" for v in _shipped()]


def validate(objects: Iterable[Any], kube_version: str) -> SchemaReport:
    """Check ``objects`` against the schemas of Kubernetes ``kube_version``.

    ``objects`` are parsed manifests, as ``yaml.safe_load_all`` gives them.

    ``kube_version`` is the cluster's (``1.29``, ``v1.29.3``, ``v1.29.3-gke.1``);
    outside the shipped range the nearest shipped version is used and the
    report's ``note`` says which and what that misses. Unknown fields are
    problems (strict); every problem of an object is reported (at most 50 per
    object), in document order. An object that is not a mapping, or has no
    ``apiVersion`` or ``kind``, is a problem too. Raises
    :class:`ValidationFailed` only for a ``kube_version`` that is not a
    version.
    """
    schema_version, note = _schema_version(kube_version)
    problems: list[Problem] = []
    unvalidated: list[str] = []
    for index, obj in enumerate(objects):
        if not isinstance(obj, Mapping):
            problems.append(Problem(f"document {index + 1}", "", "is not an object"))
            continue
        name = _name(obj, index)
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if not isinstance(api_version, str) or not api_version or not isinstance(kind, str) or not kind:
            missing = [
                key for key in ("apiVersion", "kind") if not isinstance(obj.get(key), str) or not obj.get(key)
            ]
            problems.extend(Problem(name, key, f"{key} is required") for key in missing)
            continue
        validator = _validator(schema_version, kind.lower(), _api_version_key(api_version))
        if validator is None:
            unvalidated.append(f"{name} ({api_version})")
            continue
        digest = _digest(obj)
        key = (schema_version, digest or "")
        with _VALID_LOCK:
            if digest is not None and key in _VALID:
                continue
        found = sorted(_problems(validator, dict(obj), name), key=lambda p: p.field)
        problems.extend(found[:_MAX_PROBLEMS_PER_OBJECT])
        if not found and digest is not None:
            with _VALID_LOCK:
                _VALID[key] = True
    return SchemaReport(problems, unvalidated, schema_version, note)


def _digest(obj: Mapping[str, Any]) -> str | None:
    """The object's content, whatever its keys' order, as the cluster will be sent it (JSON);
    None when JSON cannot sort its keys (YAML allows mixed ones): such an object is checked
    every time."""
    try:
        text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):
        return None
    return hashlib.sha256(text.encode()).hexdigest()


def _schema_version(kube_version: str) -> tuple[str, str]:
    match = _KUBE_VERSION.fullmatch(kube_version.strip())
    if match is None:
        raise ValidationFailed(
            f"{kube_version!r} is not a Kubernetes version such as 1.29 or v1.29.3",
            details={"kube_version": kube_version[:40]},
        )
    wanted = Version(f"{match.group(1)}.{match.group(2)}")
    shipped = _shipped()
    oldest, newest = shipped[0], shipped[-1]
    span = f"{oldest.major}.{oldest.minor} to {newest.major}.{newest.minor}"
    if wanted < oldest:
        chosen = oldest
        note = (
            f"Kubernetes {wanted} is older than the schemas envhub has ({span}): checked against "
            f"{chosen.major}.{chosen.minor}, so fields added since {wanted} are not flagged, and API "
            f"versions removed before {chosen.major}.{chosen.minor} are listed as unvalidated."
        )
    elif wanted > newest:
        chosen = newest
        note = (
            f"Kubernetes {wanted} is newer than the schemas envhub has ({span}): checked against "
            f"{chosen.major}.{chosen.minor}, so a field added since then is reported as unknown."
        )
    else:
        chosen = max(v for v in shipped if v <= wanted)
        note = ""
    return f"{chosen.major}.{chosen.minor}", note


@functools.cache
def _shipped() -> list[Version]:
    minors = {Version(f"{Version(v).major}.{Version(v).minor}") for v in kv.all_versions()}
    return sorted(minors)


def _api_version_key(api_version: str) -> str:
    # As kubernetes-validate names its files: rbac.authorization.k8s.io/v1 -> rbac-v1, v1 -> v1.
    return re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)


def _schema_dir(schema_version: str) -> str:
    full = next(v for v in kv.all_versions() if f"{Version(v).major}.{Version(v).minor}" == schema_version)
    return f"kubernetes-json-schema/v{full}-local-strict"


@functools.cache
def _registry(schema_version: str) -> referencing.Registry[Any]:
    definitions = kv.schema_contents(f"{_schema_dir(schema_version)}/_definitions.json", schema_version)
    return referencing.Resource.from_contents(definitions) @ referencing.Registry()


@functools.cache
def _validator(
    schema_version: str, kind: str, api_version_key: str
) -> jsonschema.Draft202012Validator | None:
    """The strict validator of one kind, or None when no schema of that version covers it."""
    if not re.fullmatch(r"[a-z0-9.-]+", kind + api_version_key):
        return None
    try:
        schema = kv.schema_contents(
            f"{_schema_dir(schema_version)}/{kind}-{api_version_key}.json", schema_version
        )
    except (FileNotFoundError, kv.VersionNotSupportedError, kv.InvalidSchemaError):
        return None
    # Schemas of parts (container-v1.json) exist too; only whole objects name their apiVersion.
    if "apiVersion" not in schema.get("properties", {}):
        return None
    registry = referencing.Resource.from_contents(schema) @ _registry(schema_version)
    return jsonschema.Draft202012Validator(schema, registry=registry)


def _problems(
    validator: jsonschema.Draft202012Validator, obj: dict[str, Any], name: str
) -> Iterable[Problem]:
    for error in validator.iter_errors(obj):
        path = _path(error.absolute_path)
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            for key in _unknown_keys(error.instance, error.schema):
                yield Problem(name, f"{path}.{key}" if path else str(key), f"unknown field {key!r}")
            continue
        yield Problem(name, path, _message(error))


def _unknown_keys(instance: dict[str, Any], schema: Mapping[str, Any]) -> list[str]:
    known = set(schema.get("properties", {}))
    patterns = [re.compile(p) for p in schema.get("patternProperties", {})]
    return [k for k in instance if k not in known and not any(p.search(str(k)) for p in patterns)]


def _message(error: jsonschema.ValidationError) -> str:
    if error.context:  # anyOf/oneOf: the branch that came closest says more
        closest = jsonschema.exceptions.best_match(error.context)
        if closest is not None:
            return str(closest.message)[:300]
    return str(error.message)[:300]


def _path(parts: Iterable[Any]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _name(obj: Mapping[str, Any], index: int) -> str:
    kind = obj.get("kind") if isinstance(obj.get("kind"), str) and obj.get("kind") else "(no kind)"
    metadata = obj.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    if not isinstance(name, str) or not name:
        generated = metadata.get("generateName") if isinstance(metadata, Mapping) else None
        name = f"{generated}*" if isinstance(generated, str) and generated else f"(document {index + 1})"
    return f"{kind}/{name}"
