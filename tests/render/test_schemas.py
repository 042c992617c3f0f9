"""Rendered objects against Kubernetes' own schemas (kubernetes-validate's, offline, strict)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from envhub.errors import ValidationFailed
from envhub.integrations.schemas import Problem, shipped_versions, validate


def deployment(name: str = "web") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "registry.example.com/shop@sha256:" + "a" * 64,
                            "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                            "resources": {"limits": {"memory": "256Mi", "cpu": "500m"}},
                        }
                    ]
                },
            },
        },
    }


def test_a_valid_deployment_and_service_pass() -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"app": "web"},
            "ports": [{"port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    report = validate([deployment(), service], "1.29")
    assert report.problems == []
    assert report.ok
    assert report.unvalidated == []
    assert (report.schema_version, report.note) == ("1.29", "")


def test_a_misspelled_field_and_a_wrong_type_are_named_by_object_and_path() -> None:
    broken = deployment()
    broken["spec"]["replica"] = 3  # misspelled: a lenient client would drop it
    container = broken["spec"]["template"]["spec"]["containers"][0]
    container["ports"][0]["containerPort"] = "eighty"
    container["imagePullPolicy"] = 7
    container["comand"] = ["serve"]
    report = validate([deployment("fine"), broken], "v1.30.2")
    assert not report.ok
    assert report.problems == [
        Problem("Deployment/web", "spec.replica", "unknown field 'replica'"),
        Problem("Deployment/web", "spec.template.spec.containers[0].comand", "unknown field 'comand'"),
        Problem(
            "Deployment/web", "spec.template.spec.containers[0].imagePullPolicy", report.problems[2].message
        ),
        Problem(
            "Deployment/web",
            "spec.template.spec.containers[0].ports[0].containerPort",
            report.problems[3].message,
        ),
    ]
    assert "7 is not of type 'string'" in report.problems[2].message
    assert "'eighty' is not of type 'integer'" in report.problems[3].message


def test_a_missing_required_field_is_reported_at_its_parent() -> None:
    broken = deployment()
    del broken["spec"]["selector"]
    del broken["spec"]["template"]["spec"]["containers"][0]["name"]
    report = validate([broken], "1.29")
    fields = {(p.field, p.message) for p in report.problems}
    assert ("spec", "'selector' is a required property") in fields
    assert ("spec.template.spec.containers[0]", "'name' is a required property") in fields


def test_custom_resources_are_listed_unvalidated_not_refused() -> None:
    widget = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w1"},
        "spec": {"any": "thing"},
    }
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "names": {"kind": "Widget", "plural": "widgets"},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object"}},
                }
            ],
        },
    }
    report = validate([crd, widget], "1.29")
    assert report.ok, report.problems  # the CRD itself has a schema and is valid
    assert report.unvalidated == ["Widget/w1 (example.com/v1)"]


def test_the_test_clusters_version_is_clamped_to_the_oldest_schemas_and_the_report_says_so() -> None:
    """The test apiserver is Kubernetes 1.20; kubernetes-validate ships 1.25 and newer."""
    oldest, newest = shipped_versions()[0], shipped_versions()[-1]
    assert oldest == "1.25"
    cronjob = {
        "apiVersion": "batch/v1beta1",  # the only CronJob 1.20 serves; gone by 1.25
        "kind": "CronJob",
        "metadata": {"name": "nightly"},
        "spec": {"schedule": "@daily", "jobTemplate": {"spec": {"template": {"spec": {"containers": []}}}}},
    }
    report = validate([deployment(), cronjob], "v1.20.2")
    assert report.schema_version == oldest
    assert report.ok
    assert "Kubernetes 1.20 is older than the schemas envhub has (1.25 to" in report.note
    assert "checked against 1.25" in report.note
    assert report.unvalidated == ["CronJob/nightly (batch/v1beta1)"]

    newer = validate([deployment()], "1.99")
    assert newer.schema_version == newest
    assert "newer" in newer.note


def test_objects_without_a_kind_or_apiversion_and_non_objects_are_problems() -> None:
    nameless = copy.deepcopy(deployment())
    del nameless["kind"]
    report = validate([nameless, {"kind": "ConfigMap", "metadata": {"generateName": "cfg-"}}, ["a"]], "1.29")  # type: ignore[list-item]
    assert report.problems == [
        Problem("(no kind)/web", "kind", "kind is required"),
        Problem("ConfigMap/cfg-*", "apiVersion", "apiVersion is required"),
        Problem("document 3", "", "is not an object"),
    ]


@pytest.mark.parametrize("version", ["", "latest", "1", "one.two"])
def test_a_version_that_is_not_one_is_refused(version: str) -> None:
    with pytest.raises(ValidationFailed):
        validate([deployment()], version)


def test_an_object_found_valid_is_not_checked_again_and_a_changed_one_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from envhub.integrations import schemas

    checked: list[str] = []
    problems = schemas._problems

    def counting(validator: Any, obj: dict[str, Any], name: str) -> Any:
        checked.append(name)
        return problems(validator, obj, name)

    monkeypatch.setattr(schemas, "_problems", counting)
    monkeypatch.setattr(schemas, "_VALID", schemas.LRUCache(maxsize=16))
    first = deployment("cached")
    assert validate([first], "1.29").ok
    # The same content, its keys in another order (another environment's render): not checked again.
    reordered = dict(reversed(list(copy.deepcopy(first).items())))
    assert validate([reordered], "1.29").ok
    assert checked == ["Deployment/cached"]
    # A change is checked, and a problem is never remembered as valid.
    broken = copy.deepcopy(first)
    broken["spec"]["replicas"] = "two"
    assert not validate([broken], "1.29").ok
    assert not validate([broken], "1.29").ok
    assert checked == ["Deployment/cached"] * 3
    # Another version's schemas are another check; keys JSON cannot sort (YAML allows any) are
    # always checked.
    assert validate([first], "1.30").ok
    odd = copy.deepcopy(first)
    odd["metadata"]["labels"] = {1: "one", "two": "2"}
    validate([odd], "1.29")
    validate([odd], "1.29")
    assert checked == ["Deployment/cached"] * 6
