"""parse_manifests and scope_manifests: user YAML in, namespaced and checked objects out."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from envhub.domain.kube import (
    CLUSTER_SCOPED_KINDS,
    ManifestInvalid,
    ManifestRejected,
    parse_manifests,
    scope_manifests,
)
from envhub.errors import ValidationFailed

NS = "envhub-acme-shop-dev-42"
LABELS = {"app.kubernetes.io/managed-by": "envhub", "envhub.dev/environment": "42"}


def obj(kind: str, name: str = "x", api_version: str = "v1", **fields: Any) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": name}, **fields}


def scope(*objects: dict[str, Any], **kwargs: Any) -> list[dict[str, Any]]:
    return scope_manifests(list(objects), namespace=NS, labels=LABELS, **kwargs)


def deployment(pod_spec: dict[str, Any]) -> dict[str, Any]:
    return obj(
        "Deployment",
        "app",
        "apps/v1",
        spec={"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {}, "spec": pod_spec}},
    )


# -- parsing ------------------------------------------------------------------


def test_parses_multiple_documents_and_skips_empty_ones() -> None:
    text = (
        "---\n# only a comment\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\n"
        + yaml.dump(obj("Secret", "b"))
    )
    assert [o["metadata"]["name"] for o in parse_manifests(text)] == ["a", "b"]
    assert parse_manifests("") == []


def test_dates_and_bare_equals_stay_strings() -> None:
    (cm,) = parse_manifests(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {d: 2024-01-01, e: =}\n"
    )
    assert cm["data"] == {"d": "2024-01-01", "e": "="}


def test_yaml_error_names_the_document_and_line() -> None:
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: [unclosed\n"
    with pytest.raises(ManifestInvalid, match=r"document 3, line \d+: not valid YAML") as caught:
        parse_manifests(text)
    assert caught.value.details["document"] == 3
    assert caught.value.code == "manifest_invalid"
    assert isinstance(caught.value, ValidationFailed)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("- a\n- b\n", "document 2 is a list, not a Kubernetes object"),
        ("just text\n", "document 2 is a str"),
        ("kind: ConfigMap\nmetadata: {name: a}\n", r"document 2 \(ConfigMap/a\) has no apiVersion"),
        ("apiVersion: v1\nmetadata: {name: a}\n", "has no kind"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {generateName: a-}\n", "has no metadata.name"),
        ("apiVersion: v1\nkind: ConfigMap\n", "has no metadata.name"),
    ],
)
def test_documents_that_are_not_objects_are_named(document: str, message: str) -> None:
    with pytest.raises(ManifestInvalid, match=message):
        parse_manifests("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok}\n---\n" + document)


# -- scoping ------------------------------------------------------------------


def test_sets_namespace_and_merges_labels_without_touching_the_input() -> None:
    original = obj(
        "ConfigMap", metadata={"name": "x", "labels": {"tier": "web", "envhub.dev/environment": "9"}}
    )
    (scoped,) = scope(original)
    assert scoped["metadata"]["namespace"] == NS
    # envhub's labels win over the user's: the reconciler relies on them.
    assert scoped["metadata"]["labels"] == {"tier": "web", **LABELS}
    assert original["metadata"] == {"name": "x", "labels": {"tier": "web", "envhub.dev/environment": "9"}}


def test_pod_templates_get_the_labels_and_ports_get_a_protocol() -> None:
    (scoped,) = scope(
        deployment({"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}]}]})
    )
    template = scoped["spec"]["template"]
    assert template["metadata"]["labels"] == LABELS
    assert template["spec"]["containers"][0]["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    (service,) = scope(obj("Service", spec={"ports": [{"port": 53, "protocol": "UDP"}, {"port": 80}]}))
    assert [p["protocol"] for p in service["spec"]["ports"]] == ["UDP", "TCP"]


def test_own_namespace_may_be_named() -> None:
    assert scope(obj("ConfigMap", metadata={"name": "x", "namespace": NS}))[0]["metadata"]["namespace"] == NS


def test_another_namespace_is_refused() -> None:
    with pytest.raises(ManifestRejected, match="names namespace 'kube-system'") as caught:
        scope(obj("ConfigMap", metadata={"name": "x", "namespace": "kube-system"}))
    assert caught.value.code == "manifest_rejected"
    assert caught.value.details["reason"] == "other_namespace"


@pytest.mark.parametrize(
    "kind", sorted(CLUSTER_SCOPED_KINDS | {"ClusterIssuer"})
)  # no discovery: built-in list + "Cluster*"
def test_cluster_scoped_kinds_are_refused_without_discovery(kind: str) -> None:
    with pytest.raises(ManifestRejected, match="cluster-scoped"):
        scope(obj(kind))


def test_discovery_decides_when_it_knows() -> None:
    def discovery(api_version: str, kind: str) -> bool | None:
        return {"Widget": False, "ClusterThing": True}.get(kind)

    with pytest.raises(ManifestRejected, match="Widget/x is cluster-scoped"):
        scope(obj("Widget", api_version="example.com/v1"), is_namespaced=discovery)
    assert scope(obj("ClusterThing", api_version="example.com/v1"), is_namespaced=discovery)
    # Unknown to discovery: the fallback list applies.
    with pytest.raises(ManifestRejected):
        scope(obj("StorageClass", api_version="storage.k8s.io/v1"), is_namespaced=discovery)


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("NetworkPolicy", "allow-all"),
        ("ResourceQuota", "envhub-quota"),
        ("LimitRange", "envhub-limits"),
        ("Role", "envhub-workload"),
        ("RoleBinding", "envhub-workload"),
        ("ServiceAccount", "envhub-workload"),
        ("Ingress", "web"),
        ("Endpoints", "db"),
        ("EndpointSlice", "db"),
    ],
)
def test_isolation_objects_are_refused(kind: str, name: str) -> None:
    with pytest.raises(ManifestRejected, match=f"{kind}/{name}"):
        scope(obj(kind, name))


def test_extra_quota_and_limits_under_other_names_are_allowed() -> None:
    # A second quota only restricts further; it cannot raise envhub's.
    assert len(scope(obj("ResourceQuota", "mine"), obj("LimitRange", "mine"))) == 2


RBAC = "rbac.authorization.k8s.io/v1"


def binding(role_kind: str, role: str, *subjects: dict[str, Any]) -> dict[str, Any]:
    return obj(
        "RoleBinding",
        "b",
        RBAC,
        roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
        subjects=list(subjects),
    )


LOCAL_SA = {"kind": "ServiceAccount", "name": "app", "namespace": NS}


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (binding("ClusterRole", "cluster-admin", LOCAL_SA), "binds ClusterRole 'cluster-admin'"),
        (binding("ClusterRole", "admin", LOCAL_SA), "binds ClusterRole 'admin'"),
        (binding("Role", "r", {"kind": "Group", "name": "system:authenticated"}), "subject Group"),
        (
            binding("Role", "r", {"kind": "ServiceAccount", "name": "x", "namespace": "other"}),
            r"subjects\[0\].namespace: names namespace 'other'",
        ),
    ],
)
def test_rolebindings_that_reach_outside_are_refused(bad: dict[str, Any], reason: str) -> None:
    with pytest.raises(ManifestRejected, match=reason):
        scope(bad)


def test_local_bindings_and_view_are_allowed() -> None:
    assert scope(
        binding("Role", "r", LOCAL_SA),
        binding("ClusterRole", "view", {"kind": "ServiceAccount", "name": "a"}),
    )


def role(*rules: dict[str, Any]) -> dict[str, Any]:
    return obj("Role", "r", RBAC, rules=list(rules))


@pytest.mark.parametrize(
    ("rule", "reason"),
    [
        (
            {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["create"]},
            "networkpolicies",
        ),
        ({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}, "wildcard"),
        ({"apiGroups": [""], "resources": ["resourcequotas"], "verbs": ["delete"]}, "resourcequotas"),
        ({"apiGroups": [""], "resources": ["namespaces/status"], "verbs": ["update"]}, "namespaces"),
        (
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"], "verbs": ["bind"]},
            "verbs bind",
        ),
    ],
)
def test_roles_that_could_undo_isolation_are_refused(rule: dict[str, Any], reason: str) -> None:
    with pytest.raises(ManifestRejected, match=reason):
        scope(role(rule))


def test_roles_reading_named_resources_and_writing_configmaps_are_allowed() -> None:
    # Writing workloads is refused since issue 9 (tests/security/test_manifests.py).
    assert scope(
        role(
            {
                "apiGroups": ["", "apps"],
                "resources": ["pods", "deployments"],
                "verbs": ["get", "list", "watch"],
            },
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "patch", "update"]},
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["delete"]},
        )
    )


@pytest.mark.parametrize(
    ("pod_spec", "reason"),
    [
        ({"hostNetwork": True, "containers": []}, "hostNetwork"),
        ({"hostPID": True, "containers": []}, "hostPID"),
        (
            {"volumes": [{"name": "root", "hostPath": {"path": "/"}}], "containers": []},
            "hostPath volume 'root'",
        ),
        ({"containers": [{"name": "c", "securityContext": {"privileged": True}}]}, "'c' is privileged"),
        (
            {"initContainers": [{"name": "i", "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}]},
            "SYS_ADMIN",
        ),
        ({"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 80}]}]}, "hostPort"),
    ],
)
def test_pods_with_host_access_are_refused(pod_spec: dict[str, Any], reason: str) -> None:
    with pytest.raises(ManifestRejected, match=reason):
        scope(deployment(pod_spec))
    with pytest.raises(ManifestRejected, match=reason):
        scope(obj("Pod", spec=pod_spec))
    cron = obj(
        "CronJob",
        api_version="batch/v1",
        spec={"schedule": "@daily", "jobTemplate": {"spec": {"template": {"spec": pod_spec}}}},
    )
    with pytest.raises(ManifestRejected, match=reason):
        scope(cron)


def test_baseline_capabilities_are_allowed() -> None:
    caps = {"capabilities": {"add": ["NET_BIND_SERVICE", "CHOWN"], "drop": ["ALL"]}}
    assert scope(deployment({"containers": [{"name": "c", "securityContext": caps}]}))


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ({"type": "NodePort", "ports": [{"port": 80}]}, "type NodePort"),
        ({"type": "LoadBalancer", "ports": [{"port": 80}]}, "type LoadBalancer"),
        ({"ports": [{"port": 80}], "externalIPs": ["1.2.3.4"]}, "externalIPs"),
    ],
)
def test_services_exposed_past_envhub_are_refused(spec: dict[str, Any], reason: str) -> None:
    with pytest.raises(ManifestRejected, match=reason):
        scope(obj("Service", spec=spec))


def test_malformed_objects_are_invalid_not_crashes() -> None:
    with pytest.raises(ManifestInvalid, match="object 2"):
        scope(obj("ConfigMap"), {"kind": "ConfigMap"})
    # Odd shapes inside a spec are for the API server to reject, not for us to crash on.
    assert scope(obj("Pod", spec={"containers": "nope", "volumes": [None]}))
    assert scope(obj("Service", spec={"ports": 80}), obj("Pod", spec={"containers": [{"ports": 5}]}))


def test_alias_bombs_are_refused_before_they_expand() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    bomb = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: boom}\n" + "\n".join(lines) + "\n"
    with pytest.raises(ManifestInvalid, match="document 1: the manifests expand"):
        parse_manifests(bomb)


def test_ordinary_anchors_still_work() -> None:
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, labels: &l {x: y}}\ndata: *l\n"
    assert parse_manifests(text)[0]["data"] == {"x": "y"}


@pytest.mark.parametrize(
    "body", ["data: &a [*a]", "data: " + "[" * 5000 + "]" * 5000], ids=["self-reference", "deep"]
)
def test_self_referencing_or_absurdly_deep_documents_are_invalid(body: str) -> None:
    with pytest.raises(ManifestInvalid, match="document 2: nested too deeply"):
        parse_manifests("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n" + body + "\n")
