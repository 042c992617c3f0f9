"""The operator's catalog on a cluster: an entry's objects for one instance, from manifests or a chart.

Manifest entries are filled by the pure domain (domain/catalog.py). Chart
entries are rendered by the ``helm`` binary (integrations/helm.py) from the
chart repository or OCI registry at the entry's exact version, with the
entry's values filled for the instance; the release is named after the
instance so two instances in one namespace never share an object. Either way
the objects come back without a namespace: the runtime places, applies and
prunes them with the environment's own (:class:`~envhub.integrations.backing.base.Placement`).
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from envhub.domain.catalog import (
    Catalog,
    CatalogEntry,
    Placeholders,
    chart_values,
    manifest_objects,
    parse_catalog,
)
from envhub.errors import ChartRenderFailed, ConfigurationError, ValidationFailed
from envhub.integrations.helm import ChartRef, Helm, OciChart, RepoChart


class CatalogServices:
    """:class:`~envhub.integrations.backing.base.CatalogBackend` for one catalog and one helm."""

    def __init__(self, catalog: Catalog, *, helm: Helm, kube_version: Callable[[], str | None]) -> None:
        self.catalog = catalog
        self._helm = helm
        self._kube_version = kube_version

    def render(self, entry: CatalogEntry, placeholders: Placeholders) -> list[dict[str, Any]]:
        if entry.chart is None:
            return manifest_objects(entry, placeholders)
        chart: ChartRef
        if entry.chart.repository.startswith("oci://"):
            chart = OciChart(reference=entry.chart.repository, version=entry.chart.version)
        else:
            chart = RepoChart(
                repo_url=entry.chart.repository, name=entry.chart.name, version=entry.chart.version
            )
        with tempfile.TemporaryDirectory(prefix="envhub-catalog-") as workdir:
            rendered = self._helm.render(
                chart,
                release=placeholders.instance,
                namespace=placeholders.namespace,
                values_files=[],
                values=chart_values(entry, placeholders),
                kube_version=self._kube_version(),
                workdir=Path(workdir),
            )
        objects = [doc for doc in yaml.safe_load_all(rendered.manifests) if isinstance(doc, dict) and doc]
        if not objects:
            raise ChartRenderFailed(f"catalog entry {entry.name}: the chart rendered no objects")
        for obj in objects:
            obj.get("metadata", {}).pop("namespace", None)  # the environment's, placed by the runtime
        return objects


def load_catalog(path: Path) -> Catalog:
    """The operator's catalog (ENVHUB_SERVICES_CATALOG), read again when the file changes.

    A file that is missing or invalid raises ``ConfigurationError`` naming it.
    """
    try:
        stat = path.stat()
    except OSError as exc:
        raise _unreadable(path, exc) from None
    return _load(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4)
def _load(path: Path, mtime_ns: int, size: int) -> Catalog:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise _unreadable(path, exc) from None
    try:
        return parse_catalog(text, source=str(path))
    except ValidationFailed as exc:
        raise ConfigurationError(f"ENVHUB_SERVICES_CATALOG: {exc.message}") from None


def _unreadable(path: Path, exc: OSError) -> ConfigurationError:
    return ConfigurationError(
        f"ENVHUB_SERVICES_CATALOG: cannot read {path}: {exc.strerror or exc}",
        hint="Point it at the catalog's YAML file (see deploy/catalog.example.yaml), or unset it.",
    )
