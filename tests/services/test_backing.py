"""The operator's catalog as the faces are offered it (services/backing.py ``catalog_entries``).

The dashboard's kind menu is built from this view, never from the operator's
file: without a catalog it is empty; with one it carries each entry's title,
parameters (default, description, pattern) and variables, and nothing that
would let a reader instantiate an entry (templates, values, a chart).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from envhub.config import Settings, override_settings
from envhub.errors import ConfigurationError
from envhub.services import backing
from tests.support.world import World

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "catalog.example.yaml"

_TWO_ENTRIES = """
entries:
  - name: search
    title: Elasticsearch
    parameters:
      - {name: plugins, description: "Comma-separated plugins.", default: "", pattern: '^[a-z,-]{0,80}$'}
      - {name: heap, default: "512m", pattern: '^[0-9]{2,5}m$'}
    variables: {ELASTICSEARCH_URL: "http://elastic:${password}@${host}:9200", ELASTIC_PASSWORD: "${password}"}
    chart: {repository: "oci://registry.example.com/charts/elasticsearch", version: "8.5.1"}
    values: {auth: {password: "${password}"}, secretTemplate: "do-not-leak"}
  - name: cache
    variables: {MEMCACHED_HOST: "${host}"}
    manifests: |
      kind: Service
      metadata: {name: "${instance}", annotations: {note: do-not-leak}}
"""


def _with_catalog(settings: Settings, path: Path | None) -> Settings:
    return settings.model_copy(update={"services_catalog": path})


def test_without_a_catalog_nothing_is_offered(settings: Settings, world: World) -> None:
    with override_settings(_with_catalog(settings, None)):
        assert backing.catalog_entries(actor=world.viewer) == []


def test_the_example_catalog_offers_rabbitmq_with_its_parameter_and_variable(
    settings: Settings, world: World
) -> None:
    with override_settings(_with_catalog(settings, EXAMPLE)):
        offered = backing.catalog_entries(actor=world.viewer)
    assert offered == [
        {
            "name": "rabbitmq",
            "title": "RabbitMQ",
            "description": "A RabbitMQ broker per environment (no persistence; queues start empty).",
            "parameters": [
                {
                    "name": "version",
                    "description": "RabbitMQ's minor version, such as 3.13.",
                    "default": "3.13",
                    "pattern": r"^3\.[0-9]{1,2}$",
                }
            ],
            "variables": ["AMQP_URL"],
        }
    ]


def test_entries_keep_the_catalog_s_order_and_give_no_template_away(
    settings: Settings, world: World, tmp_path: Path
) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(_TWO_ENTRIES)
    with override_settings(_with_catalog(settings, path)):
        offered = backing.catalog_entries(actor=world.nobody)  # in no team at all
    assert [(entry["name"], entry["title"]) for entry in offered] == [
        ("search", "Elasticsearch"),
        ("cache", "cache"),  # no title: its name
    ]
    search, cache = offered
    assert [(p["name"], p["default"], p["description"]) for p in search["parameters"]] == [
        ("plugins", "", "Comma-separated plugins."),
        ("heap", "512m", ""),
    ]
    assert search["variables"] == ["ELASTICSEARCH_URL", "ELASTIC_PASSWORD"]
    assert (cache["parameters"], cache["variables"]) == ([], ["MEMCACHED_HOST"])
    said = json.dumps(offered)
    for secret_part in ("do-not-leak", "${password}", "registry.example.com", "oci://"):
        assert secret_part not in said


def test_a_catalog_that_changed_on_disk_is_read_again(
    settings: Settings, world: World, tmp_path: Path
) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(EXAMPLE.read_text())
    with override_settings(_with_catalog(settings, path)):
        assert [entry["name"] for entry in backing.catalog_entries(actor=world.viewer)] == ["rabbitmq"]
        path.write_text(_TWO_ENTRIES + "\n# a longer file\n")
        assert [entry["name"] for entry in backing.catalog_entries(actor=world.viewer)] == ["search", "cache"]


def test_an_unreadable_catalog_is_a_configuration_error_naming_the_setting(
    settings: Settings, world: World, tmp_path: Path
) -> None:
    with (
        override_settings(_with_catalog(settings, tmp_path / "missing.yaml")),
        pytest.raises(ConfigurationError, match="ENVHUB_SERVICES_CATALOG"),
    ):
        backing.catalog_entries(actor=world.viewer)
