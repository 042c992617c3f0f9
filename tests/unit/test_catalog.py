"""The operator's catalog (domain/catalog.py): parsed, checked, and filled without injection."""

from __future__ import annotations

from pathlib import Path

import pytest

from envhub.domain.backing import parse_backing
from envhub.domain.catalog import (
    Placeholders,
    manifest_objects,
    parse_catalog,
    resolve_parameters,
    variables,
)
from envhub.domain.kube.guards import check_object
from envhub.errors import ValidationFailed

_MINIMAL = "{name: a, manifests: 'kind: X', variables: {A: b}}"
EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "catalog.example.yaml"


def _example_placeholders(version: str = "3.13") -> Placeholders:
    return Placeholders(
        instance="mq-e12", namespace="envhub-e12", password="s3cr3t", parameters={"version": version}
    )


def test_the_shipped_example_parses_renders_and_passes_the_manifest_guard() -> None:
    catalog = parse_catalog(EXAMPLE.read_text())
    entry = catalog.get("rabbitmq")
    assert entry is not None
    assert entry.label == "RabbitMQ"
    objects = manifest_objects(entry, _example_placeholders())
    assert [obj["kind"] for obj in objects] == ["Secret", "Service", "Deployment"]
    assert {obj["metadata"]["name"] for obj in objects} == {"mq-e12"}
    [container] = objects[2]["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "docker.io/library/rabbitmq:3.13-alpine"
    assert objects[0]["stringData"]["RABBITMQ_DEFAULT_PASS"] == "s3cr3t"
    for obj in objects:
        check_object(obj, namespace="envhub-e12")
    assert variables(entry, _example_placeholders()) == {
        "AMQP_URL": "amqp://envhub:s3cr3t@mq-e12.envhub-e12.svc:5672/"
    }


def test_a_parameter_fills_string_values_only_and_cannot_add_structure() -> None:
    catalog = parse_catalog(
        """
entries:
  - name: thing
    parameters:
      - {name: note, default: "x", pattern: '^[\\s\\S]{0,100}$'}
    variables: {THING_URL: "http://${host}"}
    manifests: |
      apiVersion: v1
      kind: ConfigMap
      metadata: {name: "${instance}"}
      data: {note: "${parameters.note}"}
"""
    )
    entry = catalog.get("thing")
    assert entry is not None
    hostile = "a\n---\nkind: ClusterRoleBinding\nmetadata: {name: x}"
    [obj] = manifest_objects(
        entry, Placeholders("t", "ns", "p", resolve_parameters(entry, {"note": hostile}))
    )
    assert obj["kind"] == "ConfigMap"
    assert obj["data"] == {"note": hostile}


def test_parameters_are_checked_against_their_patterns_and_names() -> None:
    entry = parse_catalog(EXAMPLE.read_text()).get("rabbitmq")
    assert entry is not None
    assert resolve_parameters(entry, {}) == {"version": "3.13"}
    assert resolve_parameters(entry, {"version": "3.12"}) == {"version": "3.12"}
    with pytest.raises(ValidationFailed) as bad:
        resolve_parameters(entry, {"version": "latest; rm -rf /"})
    assert "not a valid version" in bad.value.message
    with pytest.raises(ValidationFailed) as unknown:
        resolve_parameters(entry, {"plugins": "x"})
    assert "has no parameter plugins" in unknown.value.message


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("entries: [{name: Bad, manifests: 'kind: X', variables: {A: b}}]", "lower-case"),
        ("entries: [{name: a, variables: {A: b}}]", "needs manifests or a chart"),
        ("entries: [{name: a, manifests: 'kind: X'}]", "gives workloads no variables"),
        ("entries: [{name: a, manifests: 'kind: X', variables: {lower: b}}]", "not an upper-case variable"),
        ("entries: [{name: a, manifests: '- 1', variables: {A: b}}]", "must be Kubernetes objects"),
        (
            "entries: [{name: a, manifests: 'kind: X', variables: {A: b}, "
            "parameters: [{name: v, default: '!'}]}]",
            "does not match its pattern",
        ),
        (
            f"entries: [{_MINIMAL}, {_MINIMAL}]",
            "unique",
        ),
        ("entries: [", "not YAML"),
    ],
)
def test_a_bad_catalog_is_refused_saying_where(text: str, says: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        parse_catalog(text)
    assert says in refused.value.message


def test_an_unknown_placeholder_is_an_error_naming_the_entry() -> None:
    entry = parse_catalog("entries: [{name: a, manifests: 'kind: X', variables: {A: '${nope}'}}]").get("a")
    assert entry is not None
    with pytest.raises(ValidationFailed) as refused:
        variables(entry, Placeholders("i", "n", "p", {}))
    assert refused.value.message == "catalog entry a, A: unknown placeholder ${nope}"


def test_a_catalog_service_is_declared_with_its_entry() -> None:
    [mq] = parse_backing(
        [{"name": "mq", "kind": "catalog", "entry": "rabbitmq", "parameters": {"version": "3.12"}}]
    ).services
    assert mq.label == "rabbitmq (catalog)"
    assert mq.variable_names() == {}
    assert mq.variable_names(["AMQP_URL"]) == {"AMQP_URL": "AMQP_URL"}
    for raw, says in [
        ({"name": "mq", "kind": "catalog"}, "names its entry"),
        ({"name": "db", "kind": "postgres", "entry": "x"}, "entry applies to kind catalog only"),
        (
            {"name": "db", "kind": "postgres", "parameters": {"a": "b"}},
            "parameters apply to kind catalog only",
        ),
        ({"name": "mq", "kind": "catalog", "entry": "Rabbit MQ"}, "must name a catalog entry"),
    ]:
        with pytest.raises(ValidationFailed) as refused:
            parse_backing([raw])
        assert says in refused.value.message


def test_the_cli_reads_a_catalog_service_with_its_parameters() -> None:
    from envhub.cli.errors import CliError
    from envhub.cli.projects import parse_services

    assert parse_services(
        ["db=postgres:16", "mq=catalog:rabbitmq:version=3.12,tls=off", "q=catalog:sqs"]
    ) == [
        {"name": "db", "kind": "postgres", "version": "16"},
        {
            "name": "mq",
            "kind": "catalog",
            "entry": "rabbitmq",
            "parameters": {"version": "3.12", "tls": "off"},
        },
        {"name": "q", "kind": "catalog", "entry": "sqs", "parameters": {}},
    ]
    with pytest.raises(CliError) as refused:
        parse_services(["mq=catalog:rabbitmq:version"])
    assert "is not KEY=VALUE" in refused.value.message
