"""The record of applied objects on the Namespace, and the rendering rules the runtime relies on."""

from __future__ import annotations

from typing import Any

import kubernetes_validate

from envhub.domain.kube import (
    APPLIED_ANNOTATION,
    PUBLIC_ANNOTATION,
    SERVICES_ANNOTATION,
    Applied,
    applied,
    decode_applied,
    dropped,
    encode_applied,
    render_environment,
    render_inventory,
)
from envhub.domain.kube.deployments import MIN_READY_SECONDS

from .conftest import SCENARIOS, make_target

WEB = Applied("apps/v1", "Deployment", "web")
WEB_SERVICE = Applied("v1", "Service", "web")
POLICY = Applied("networking.k8s.io/v1", "NetworkPolicy", "envhub-allow-egress")


def test_the_record_is_sorted_compact_and_reads_back() -> None:
    text = encode_applied([WEB_SERVICE, POLICY, WEB, WEB])
    assert text == (
        "apps/v1/Deployment/web,networking.k8s.io/v1/NetworkPolicy/envhub-allow-egress,v1/Service/web"
    )
    assert decode_applied(text) == {WEB, WEB_SERVICE, POLICY}
    assert encode_applied([WEB, POLICY, WEB_SERVICE]) == text  # the same set always reads the same


def test_no_record_differs_from_an_empty_one_and_bad_entries_are_skipped() -> None:
    assert decode_applied(None) is None  # an environment from before the record: list once
    assert decode_applied("") == frozenset()
    assert decode_applied("v1/Service/web, nonsense,/x/y") == {WEB_SERVICE}


def test_dropped_compares_objects_whatever_their_version() -> None:
    old_version = Applied("apps/v1beta2", "Deployment", "web")
    assert dropped([old_version, POLICY], [WEB]) == [POLICY]
    assert dropped([WEB, WEB_SERVICE], [WEB, WEB_SERVICE]) == []


def test_every_rendered_object_has_an_entry_and_the_record_is_a_valid_namespace() -> None:
    target, kwargs = SCENARIOS["full"]
    objects = render_environment(target, **kwargs)
    entries = [applied(obj) for obj in objects[1:]]
    assert len(set(entries)) == len(objects) - 1
    record = render_inventory(objects[0]["metadata"]["name"], entries)
    kubernetes_validate.validate(record, kubernetes_validate.latest_version(), strict=True)
    # Only the annotation: labels belong to the Namespace's own apply.
    assert set(record["metadata"]) == {"name", "annotations"}
    assert decode_applied(record["metadata"]["annotations"][APPLIED_ANNOTATION]) == set(entries)


def _deployments(target: Any) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in render_environment(target) if o["kind"] == "Deployment"}


def test_availability_means_more_than_started() -> None:
    target = make_target(
        {
            "services": [
                {"name": "web", "image": "nginx", "ports": [8080, 9090]},
                {"name": "api", "image": "api", "ports": [8000], "health": {"path": "/healthz"}},
                {"name": "worker", "image": "worker"},
            ]
        }
    )
    deployments = _deployments(target)
    web = deployments["web"]["spec"]
    # A port and no health check: ready once the first port accepts connections.
    assert web["template"]["spec"]["containers"][0]["readinessProbe"]["tcpSocket"] == {"port": 8080}
    assert "minReadySeconds" not in web
    api = deployments["api"]["spec"]
    assert api["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert "minReadySeconds" not in api
    # Nothing to probe: it must stay up a while before it counts.
    worker = deployments["worker"]["spec"]
    assert "readinessProbe" not in worker["template"]["spec"]["containers"][0]
    assert worker["minReadySeconds"] == MIN_READY_SECONDS


def test_the_namespace_carries_the_service_order() -> None:
    target = make_target(
        {"services": [{"name": "zeta", "image": "z"}, {"name": "alpha", "image": "a", "ports": [80]}]}
    )
    namespace = render_environment(target)[0]
    # ... and the public endpoint: the first service with a port.
    assert namespace["metadata"]["annotations"] == {
        SERVICES_ANNOTATION: "zeta,alpha",
        PUBLIC_ANNOTATION: "alpha:80",
    }
    manifests_only = make_target({"manifests": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n"})
    assert "annotations" not in render_environment(manifests_only)[0]["metadata"]
