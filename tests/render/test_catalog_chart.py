"""A catalog entry from a chart repository, rendered by the real helm for one instance."""

from __future__ import annotations

from pathlib import Path

import pytest

from envhub.domain.catalog import Placeholders, parse_catalog
from envhub.errors import ChartRenderFailed
from envhub.integrations.backing.catalog import CatalogServices
from envhub.integrations.helm import Helm
from tests.support.charts import ChartRepo


def _catalog(url: str, version: str = "0.2.0") -> str:
    return f"""
entries:
  - name: sub
    parameters:
      - {{name: greeting, default: hi}}
    chart: {{repository: "{url}", name: sub, version: "{version}"}}
    values:
      greeting: "${{parameters.greeting}} from ${{instance}}"
    variables:
      SUB_URL: "http://${{host}}:8080"
"""


def test_a_chart_entry_renders_with_filled_values_named_after_the_instance(
    helm_binary: Path, chart_repo: ChartRepo
) -> None:
    catalog = parse_catalog(_catalog(chart_repo.url))
    services = CatalogServices(catalog, helm=Helm(str(helm_binary)), kube_version=lambda: "1.30.0")
    entry = catalog.get("sub")
    assert entry is not None
    placeholders = Placeholders("envhub-one", "envhub-acme-shop-pr-1-7", "pw", {"greeting": "hello"})
    [configmap] = services.render(entry, placeholders)
    assert configmap["metadata"]["name"] == "envhub-one-sub"
    assert "namespace" not in configmap["metadata"]  # the runtime places it
    assert configmap["data"] == {"greeting": "hello from envhub-one", "kube": "v1.30.0"}


def test_a_version_the_repository_lacks_fails_the_render_naming_it(
    helm_binary: Path, chart_repo: ChartRepo
) -> None:
    catalog = parse_catalog(_catalog(chart_repo.url, version="9.9.9"))
    services = CatalogServices(catalog, helm=Helm(str(helm_binary)), kube_version=lambda: None)
    entry = catalog.get("sub")
    assert entry is not None
    with pytest.raises(ChartRenderFailed) as failed:
        services.render(entry, Placeholders("envhub-one", "ns", "pw", {"greeting": "hi"}))
    assert "9.9.9" in failed.value.message
