"""render_environment: snapshots, schema validity, determinism and the rules every object follows.

Snapshots live in ``snapshots/<scenario>.json``. After an intended change, run

    ENVHUB_UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest tests/unit/kube

and review the diff of the JSON files like any other code change.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from envhub.domain.kube import (
    ManifestRejected,
    PublicEndpoint,
    namespace_for,
    public_endpoint,
    render_environment,
)
from envhub.domain.specs import EnvironmentTarget
from envhub.errors import InvalidName

from .conftest import SCENARIOS, make_target

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE = os.environ.get("ENVHUB_UPDATE_SNAPSHOTS") == "1"
# The oldest schema the package ships at or above 1.33, and the newest one.
SCHEMA_VERSIONS = ("1.33", kubernetes_validate.latest_version())

Scenario = tuple[str, EnvironmentTarget, dict[str, Any]]


def _render(scenario: Scenario) -> list[dict[str, Any]]:
    _, target, kwargs = scenario
    return render_environment(target, **kwargs)


def test_matches_snapshot(scenario: Scenario) -> None:
    name = scenario[0]
    rendered = _render(scenario)
    path = SNAPSHOTS / f"{name}.json"
    text = json.dumps(rendered, indent=2) + "\n"
    if UPDATE:
        path.write_text(text)
    assert path.exists(), f"no snapshot {path.name}; run with ENVHUB_UPDATE_SNAPSHOTS=1 to create it"
    assert json.loads(path.read_text()) == rendered, "rendering changed; see this module's docstring"


def test_snapshots_have_no_strays() -> None:
    assert {p.stem for p in SNAPSHOTS.glob("*.json")} == set(SCENARIOS)


@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
def test_every_object_is_valid_kubernetes(scenario: Scenario, version: str) -> None:
    for obj in _render(scenario):
        # strict: unknown fields are errors, as they are for server-side apply.
        kubernetes_validate.validate(obj, version, strict=True)


def test_the_schema_check_is_strict() -> None:
    # Guards the test above against passing vacuously.
    bad = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"prots": []}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, SCHEMA_VERSIONS[-1], strict=True)


def test_rendering_is_deterministic_and_plain_json(scenario: Scenario) -> None:
    first, second = _render(scenario), _render(scenario)
    assert first == second
    # Tuples or other non-JSON types would not survive this round trip unchanged.
    assert json.loads(json.dumps(first)) == first


def test_order_is_namespace_then_isolation_then_rbac_then_workloads() -> None:
    target, kwargs = SCENARIOS["manifests"]
    kinds = [obj["kind"] for obj in render_environment(target, **kwargs)]
    assert kinds == [
        "Namespace",
        "ResourceQuota",
        "LimitRange",
        "NetworkPolicy",
        "NetworkPolicy",
        "NetworkPolicy",
        "NetworkPolicy",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        # the owning team's kubectl access: view and edit Roles, then their bindings
        "Role",
        "Role",
        "RoleBinding",
        "RoleBinding",
        "Service",
        "Deployment",
        # the user's manifests, by kind: ServiceAccount, ConfigMap, Service, Deployment
        "ServiceAccount",
        "ConfigMap",
        "Service",
        "Deployment",
    ]


def test_every_object_carries_the_environment_labels(scenario: Scenario) -> None:
    _, target, _ = scenario
    namespace = namespace_for(target)
    for obj in _render(scenario):
        labels = obj["metadata"]["labels"]
        assert labels.items() >= target.labels.items(), obj["metadata"]["name"]
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == namespace
        template = obj.get("spec", {}).get("template")
        if template is not None:
            assert template["metadata"]["labels"].items() >= target.labels.items()


def _ports(obj: dict[str, Any]) -> list[dict[str, Any]]:
    if obj["kind"] == "Service":
        return list(obj["spec"]["ports"])
    if obj["kind"] == "Deployment":
        return [p for c in obj["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])]
    return []


def test_every_port_names_its_protocol(scenario: Scenario) -> None:
    ports = [p for obj in _render(scenario) for p in _ports(obj)]
    assert ports
    assert all(p.get("protocol") == "TCP" for p in ports)


def _deployment(objects: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == name)


def test_pods_run_hardened_but_as_the_image_wants() -> None:
    target, kwargs = SCENARIOS["full"]
    pod = _deployment(render_environment(target, **kwargs), "web")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "envhub-workload"
    assert pod["automountServiceAccountToken"] is False
    container = pod["containers"][0]
    assert container["securityContext"] == {"allowPrivilegeEscalation": False}
    assert "runAsNonRoot" not in json.dumps(pod)


def test_environment_variables_envhub_first_then_spec_then_service() -> None:
    target, kwargs = SCENARIOS["full"]
    objects = render_environment(target, **kwargs)
    web = _deployment(objects, "web")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert web == [
        {"name": "ENVHUB_ENVIRONMENT", "value": target.name},
        {"name": "ENVHUB_PROJECT", "value": "storefront-frontend"},  # "spoofed" was dropped
        {"name": "PORT", "value": "8080"},
        {"name": "GREETING", "value": "hello"},
        {"name": "SHARED", "value": "service"},
    ]
    admin = _deployment(objects, "admin")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert [e["name"] for e in admin].count("PORT") == 1
    worker = _deployment(objects, "worker")["spec"]["template"]["spec"]["containers"][0]
    assert "PORT" not in {e["name"] for e in worker["env"]}
    assert worker["resources"] == {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}


def test_health_check_becomes_readiness_and_a_later_liveness_probe() -> None:
    target, kwargs = SCENARIOS["full"]
    web = _deployment(render_environment(target, **kwargs), "web")["spec"]["template"]["spec"]["containers"][
        0
    ]
    ready, live = web["readinessProbe"], web["livenessProbe"]
    assert ready["httpGet"] == {"path": "/healthz", "port": 8080, "scheme": "HTTP"}
    assert live["httpGet"] == ready["httpGet"]
    assert live["initialDelaySeconds"] > ready["initialDelaySeconds"]


def test_health_check_without_any_port_renders_no_probe() -> None:
    target = make_target({"services": [{"name": "job", "image": "busybox", "health": {"path": "/"}}]})
    container = _deployment(render_environment(target), "job")["spec"]["template"]["spec"]["containers"][0]
    assert "readinessProbe" not in container
    assert not [o for o in render_environment(target) if o["kind"] == "Service"]


def test_quota_is_clamped_to_platform_limits() -> None:
    target, kwargs = SCENARIOS["full"]
    quota = next(o for o in render_environment(target, **kwargs) if o["kind"] == "ResourceQuota")
    hard = quota["spec"]["hard"]
    assert (hard["requests.cpu"], hard["limits.cpu"], hard["requests.memory"], hard["pods"]) == (
        "8",
        "8",
        "16Gi",
        "50",
    )
    assert hard["services.nodeports"] == hard["services.loadbalancers"] == "0"


def test_public_endpoint_is_the_first_public_service_with_a_port() -> None:
    target, _ = SCENARIOS["full"]
    endpoint = public_endpoint(target.spec, namespace="ns")
    assert endpoint is not None
    assert (endpoint.service, endpoint.port, endpoint.host) == ("web", 8080, "web.ns.svc")
    private = make_target({"services": [{"name": "a", "image": "x", "ports": [1], "public": False}]})
    assert public_endpoint(private.spec, namespace="ns") is None
    no_port = make_target(
        {"services": [{"name": "a", "image": "x"}, {"name": "b", "image": "x", "ports": [5]}]}
    )
    assert public_endpoint(no_port.spec, namespace="ns") == PublicEndpoint(
        service="b", namespace="ns", port=5
    )


def test_a_manifest_may_not_redefine_a_service_of_the_spec() -> None:
    manifest = (
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 1, protocol: TCP}]}\n"
    )
    target = make_target({"services": [{"name": "web", "image": "x", "ports": [80]}], "manifests": manifest})
    with pytest.raises(ManifestRejected, match="Service/web is defined twice"):
        render_environment(target)


def test_an_explicit_namespace_is_used_and_checked() -> None:
    target, _ = SCENARIOS["minimal"]
    assert {o["metadata"].get("namespace") for o in render_environment(target, namespace="custom")} == {
        None,
        "custom",
    }
    with pytest.raises(InvalidName, match="namespace"):
        render_environment(target, namespace="Not_A_Label")
