"""What envhub applied in an environment, recorded on the environment's Namespace.

Pruning must find the objects an earlier apply created that the spec no longer
has. Listing every kind in the namespace to find them costs a request per kind
on every apply, and only finds the kinds someone thought of listing. Instead
the runtime records what it applied in one annotation of the Namespace
(:data:`APPLIED_ANNOTATION`) and deletes exactly the entries that dropped out.

An entry is ``<apiVersion>/<Kind>/<name>`` (``apps/v1/Deployment/web``,
``v1/Service/web``): enough to delete the object without asking discovery, and
unambiguous because neither kinds nor names contain ``/``. Entries are sorted
and comma-separated, so the same set always reads the same and re-writing an
unchanged record changes nothing. Two entries naming the same object at
different versions (``apps/v1beta2`` then ``apps/v1``) are the same object:
:func:`dropped` compares by group, kind and name.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from envhub.domain.kube.names import metadata

APPLIED_ANNOTATION = "envhub.dev/applied"
# The spec's container services in order, so logs and exec default to the first.
SERVICES_ANNOTATION = "envhub.dev/services"
# "<service>:<port>" that the environment's public URL points at (absent without one),
# so the runtime finds it from the Namespace alone, without the spec.
PUBLIC_ANNOTATION = "envhub.dev/public-endpoint"


@dataclass(frozen=True, slots=True, order=True)
class Applied:
    """One object envhub applied into an environment's namespace."""

    api_version: str
    kind: str
    name: str

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def identity(self) -> tuple[str, str, str]:
        """The object whatever its version: (group, kind, name)."""
        return self.group, self.kind, self.name

    def __str__(self) -> str:
        return f"{self.api_version}/{self.kind}/{self.name}"


def applied(obj: dict[str, Any]) -> Applied:
    return Applied(str(obj["apiVersion"]), str(obj["kind"]), str(obj["metadata"]["name"]))


def identity(obj: dict[str, Any]) -> tuple[str, str, str]:
    """(group, kind, name) of a rendered object: apps/v1 and apps/v1beta2 Deployments collide."""
    return applied(obj).identity


def encode_applied(entries: Iterable[Applied]) -> str:
    return ",".join(sorted({str(entry) for entry in entries}))


def decode_applied(text: str | None) -> frozenset[Applied] | None:
    """The entries of a record; None when there is no record (an environment from before records)."""
    if text is None:
        return None
    found = set()
    for item in text.split(","):
        api_version, _, rest = item.strip().rpartition("/")
        api_version, _, kind = api_version.rpartition("/")
        # rest is the name; a malformed entry (hand-edited) is skipped, not fatal.
        if api_version and kind and rest:
            found.add(Applied(api_version, kind, rest))
    return frozenset(found)


def dropped(previous: Iterable[Applied], current: Iterable[Applied]) -> list[Applied]:
    """Entries of ``previous`` whose object is not in ``current`` (whatever the version), sorted."""
    keep = {entry.identity for entry in current}
    return sorted(entry for entry in set(previous) if entry.identity not in keep)


def render_inventory(namespace: str, entries: Iterable[Applied]) -> dict[str, Any]:
    """The Namespace as the record's own field manager applies it: the annotation, nothing else."""
    meta = metadata(namespace, None, {})
    del meta["labels"]  # not this field manager's to own
    meta["annotations"] = {APPLIED_ANNOTATION: encode_applied(entries)}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}
