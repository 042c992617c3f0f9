"""Pruning from the record of what envhub applied, instead of listing every kind.

The record is the Namespace's ``envhub.dev/applied`` annotation (see
``domain/kube/inventory.py``), owned by a field manager of its own. The
Namespace's ordinary apply at the start of every run (field manager
``envhub``) leaves that annotation alone, so its response carries the previous
record at no cost. The record is written only when it changes:

* before anything new is applied, as previous + current, so a run killed
  half-way never leaves an object that no record names;
* after the objects that dropped out are deleted, as current.

A re-run of an unchanged spec writes nothing. A Namespace this run created has
no previous objects; one from an envhub that kept no record is listed once
(the kinds that envhub pruned), and has a record from then on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from envhub.domain.kube import (
    APPLIED_ANNOTATION,
    Applied,
    decode_applied,
    dropped,
    render_inventory,
)
from envhub.runtime.kubernetes.discovery import RENDERED_KINDS, Applier, Stored
from envhub.runtime.kubernetes.rest import request

log = logging.getLogger(__name__)

INVENTORY_MANAGER = "envhub-inventory"
MANAGED = "app.kubernetes.io/managed-by=envhub"
# What envhub pruned by listing before it kept a record.
_LISTED_KINDS = (("apps/v1", "Deployment"), ("v1", "Service"), ("networking.k8s.io/v1", "NetworkPolicy"))


class Inventory:
    def __init__(self, applier: Applier, namespace: str, current: Iterable[Applied]) -> None:
        self.applier = applier
        self.namespace = namespace
        self.current = frozenset(current)
        self.previous: frozenset[Applied] = frozenset()
        self.recorded: frozenset[Applied] | None = None  # what the Namespace's record says now

    def open(self, namespace: Stored) -> None:
        """Take the previous record from the Namespace's apply response; name what is about to be applied."""
        annotations = (namespace.object.get("metadata") or {}).get("annotations") or {}
        self.recorded = decode_applied(annotations.get(APPLIED_ANNOTATION))
        if self.recorded is not None:
            self.previous = self.recorded
        elif not namespace.created:
            self.previous = self._listed()
        if self.recorded is None or not self.current <= self.recorded:
            self._write(self.previous | self.current)

    def _listed(self) -> frozenset[Applied]:
        found = set()
        for api_version, kind in _LISTED_KINDS:
            collection = RENDERED_KINDS[(api_version, kind)].collection(self.namespace)
            listing = request(
                self.applier.api, f"listing {kind}s", "GET", collection, query=[("labelSelector", MANAGED)]
            ).body
            found |= {Applied(api_version, kind, str(item["metadata"]["name"])) for item in listing["items"]}
        return frozenset(found)

    def _write(self, entries: frozenset[Applied]) -> None:
        self.applier.apply(render_inventory(self.namespace, entries), field_manager=INVENTORY_MANAGER)
        self.recorded = entries

    def close(self) -> list[Applied]:
        """Delete what dropped out of the spec, then record what is there now; returns the deleted."""
        gone = dropped(self.previous, self.current)
        for entry in gone:
            self.applier.delete(entry, namespace=self.namespace)
        if self.recorded != self.current:
            self._write(self.current)
        if gone:
            log.info("pruned from %s: %s", self.namespace, ", ".join(map(str, gone)))
        return gone
