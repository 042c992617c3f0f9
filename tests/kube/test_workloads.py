"""Workloads: container services become Deployments and Services; raw manifests land in the namespace.

Apply is idempotent (a second apply changes no object), objects the spec no
longer has are pruned, and manifests that would leave the namespace, or that the
cluster cannot serve, are refused with codes a person can act on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from envhub.domain.kube import ManifestRejected, namespace_for
from envhub.domain.kube.browser import BrowserSidecar
from envhub.domain.specs import EnvironmentTarget, parse_spec
from envhub.errors import ClusterRejected
from envhub.runtime.base import RuntimeState
from envhub.runtime.kubernetes import KubernetesRuntime
from tests.kube.helpers import Kube, web_service
from tests.support.runtime import RecordingProgress

pytestmark = pytest.mark.kube

MakeEnv = Callable[..., EnvironmentTarget]

# Namespaced kinds envhub or a user manifest may create in an environment.
_KINDS = {
    "ConfigMap": "/api/v1/namespaces/{ns}/configmaps",
    "Service": "/api/v1/namespaces/{ns}/services",
    "ServiceAccount": "/api/v1/namespaces/{ns}/serviceaccounts",
    "ResourceQuota": "/api/v1/namespaces/{ns}/resourcequotas",
    "LimitRange": "/api/v1/namespaces/{ns}/limitranges",
    "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments",
    "NetworkPolicy": "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies",
    "Role": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
    "RoleBinding": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
    "CronJob": "/apis/batch/v1beta1/namespaces/{ns}/cronjobs",
}

APP_MANIFESTS = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, labels: {tier: config}}
data: {greeting: hello}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: queue}
spec:
  selector: {matchLabels: {app: queue}}
  template:
    metadata: {labels: {app: queue}}
    spec:
      containers:
        - name: queue
          image: rabbitmq:3
          command: [sleep, "3600"]
          ports: [{containerPort: 5672}]
---
apiVersion: v1
kind: Service
metadata: {name: queue}
spec:
  selector: {app: queue}
  ports: [{name: amqp, port: 5672}]
---
apiVersion: batch/v1beta1
kind: CronJob
metadata: {name: nightly}
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{name: job, image: busybox, command: ["true"]}]
"""


def envhub_objects(kube: Kube, ns: str) -> dict[tuple[str, str], dict[str, Any]]:
    """Every envhub-labelled object in ``ns`` (and the namespace itself), by (kind, name)."""
    found = {("Namespace", ns): kube.get(f"/api/v1/namespaces/{ns}") or {}}
    for kind, path in _KINDS.items():
        for obj in kube.items(path.format(ns=ns), labelSelector="app.kubernetes.io/managed-by=envhub"):
            found[(kind, obj["metadata"]["name"])] = obj
    return found


def versions(objects: dict[tuple[str, str], dict[str, Any]]) -> dict[tuple[str, str], tuple[str, int | None]]:
    return {
        key: (obj["metadata"]["resourceVersion"], obj["metadata"].get("generation"))
        for key, obj in objects.items()
    }


def test_container_services_become_deployments_and_services(
    runtime: KubernetesRuntime, kube: Kube, make_env: MakeEnv
) -> None:
    web = web_service(env={"GREETING": "hi"}, replicas=2)
    worker = {"name": "worker", "image": "busybox", "command": ["sleep", "3600"]}
    target = make_env(services=[web, worker])
    status = runtime.apply(target, progress=RecordingProgress())
    ns = namespace_for(target)
    assert status.state is RuntimeState.ready
    assert status.message == "all workloads available (web, worker)"
    assert status.endpoint is not None
    assert (status.endpoint.host, status.endpoint.port) == (f"web.{ns}.svc", web["ports"][0])

    deployment = kube.get(f"/apis/apps/v1/namespaces/{ns}/deployments/web")
    assert deployment is not None
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["selector"] == {
        "matchLabels": {"app.kubernetes.io/name": "web", "envhub.dev/service": "web"}
    }
    template = deployment["spec"]["template"]
    assert template["metadata"]["labels"]["envhub.dev/environment"] == str(target.id)
    [container] = template["spec"]["containers"]
    assert container["image"] == "python:3.12-slim"
    assert container["command"] == web["command"]
    assert container["ports"] == [
        {"name": f"tcp-{web['ports'][0]}", "containerPort": web["ports"][0], "protocol": "TCP"}
    ]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == {
        "ENVHUB_ENVIRONMENT": "dev",
        "ENVHUB_PROJECT": "shop",
        "PORT": str(web["ports"][0]),
        "GREETING": "hi",
    }
    assert container["securityContext"] == {"allowPrivilegeEscalation": False}
    assert deployment["status"]["availableReplicas"] == 2

    service = kube.get(f"/api/v1/namespaces/{ns}/services/web")
    assert service is not None
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"] == {"app.kubernetes.io/name": "web", "envhub.dev/service": "web"}
    assert [(p["port"], p["targetPort"], p["protocol"]) for p in service["spec"]["ports"]] == [
        (web["ports"][0], web["ports"][0], "TCP")
    ]
    # A service without ports gets a Deployment but no Service.
    assert kube.get(f"/apis/apps/v1/namespaces/{ns}/deployments/worker") is not None
    assert kube.get(f"/api/v1/namespaces/{ns}/services/worker") is None
    pods = kube.items(f"/api/v1/namespaces/{ns}/pods")
    assert sorted(p["metadata"]["labels"]["app.kubernetes.io/name"] for p in pods) == ["web", "web", "worker"]


def test_apply_is_idempotent_and_prunes_what_the_spec_dropped(
    runtime: KubernetesRuntime, kube: Kube, make_env: MakeEnv
) -> None:
    web = web_service()
    worker = {"name": "worker", "image": "busybox", "command": ["sleep", "3600"], "ports": [7000]}
    target = make_env(services=[web, worker], manifests=APP_MANIFESTS, egress={"cidrs": ["10.0.0.0/8"]})
    runtime.apply(target, progress=RecordingProgress())
    ns = namespace_for(target)
    before = envhub_objects(kube, ns)
    # namespace, 9 isolation objects, the team's 2 kubectl Roles and 2 RoleBindings,
    # 2+1 Deployments, 2+1 Services, ConfigMap, CronJob
    assert len(before) == 23

    runtime.apply(target, progress=RecordingProgress())
    after = envhub_objects(kube, ns)
    assert versions(after) == versions(before)  # nothing was written: same resourceVersion and generation
    assert len(kube.items(f"/apis/apps/v1/namespaces/{ns}/replicasets")) == 3
    assert kube.live_namespaces(target.id) == [ns]

    # The next generation drops the worker and the egress allowlist: both are pruned.
    smaller = dataclasses.replace(
        target, generation=2, spec=parse_spec({"services": [web], "manifests": APP_MANIFESTS})
    )
    runtime.apply(smaller, progress=RecordingProgress())
    pruned = envhub_objects(kube, ns)
    assert set(before) - set(pruned) == {
        ("Deployment", "worker"),
        ("Service", "worker"),
        ("NetworkPolicy", "envhub-allow-egress"),
    }
    assert (
        pruned[("Deployment", "web")]["metadata"]["generation"]
        == before[("Deployment", "web")]["metadata"]["generation"]
    )


def test_raw_manifests_are_applied_into_the_namespace_with_envhub_labels(
    runtime: KubernetesRuntime, kube: Kube, make_env: MakeEnv
) -> None:
    target = make_env(manifests=APP_MANIFESTS)
    status = runtime.apply(target, progress=RecordingProgress())
    ns = namespace_for(target)
    assert status.state is RuntimeState.ready
    assert status.message == "all workloads available (queue)"

    config = kube.get(f"/api/v1/namespaces/{ns}/configmaps/settings")
    assert config is not None
    assert config["data"] == {"greeting": "hello"}
    assert config["metadata"]["labels"]["tier"] == "config"  # the user's labels are kept...
    assert config["metadata"]["labels"]["envhub.dev/environment"] == str(target.id)  # ...and envhub's added
    queue = kube.get(f"/apis/apps/v1/namespaces/{ns}/deployments/queue")
    assert queue is not None
    assert queue["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "envhub"
    service = kube.get(f"/api/v1/namespaces/{ns}/services/queue")
    assert service is not None
    assert service["spec"]["ports"][0]["protocol"] == "TCP"  # filled in for v1.20's server-side apply
    assert kube.get(f"/apis/batch/v1beta1/namespaces/{ns}/cronjobs/nightly") is not None
    [pod] = kube.items(f"/api/v1/namespaces/{ns}/pods")
    assert pod["metadata"]["labels"]["envhub.dev/environment"] == str(target.id)


@pytest.mark.parametrize(
    ("manifest", "reason"),
    [
        (
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\n"
            "metadata: {name: sneaky}\nrules: []\n",
            "cluster_scoped",
        ),
        ("apiVersion: v1\nkind: Namespace\nmetadata: {name: elsewhere}\n", "cluster_scoped"),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: kube-system}\ndata: {}\n",
            "other_namespace",
        ),
    ],
    ids=["cluster-role", "namespace", "other-namespace"],
)
def test_objects_outside_the_namespace_are_refused_before_anything_is_applied(
    runtime: KubernetesRuntime, kube: Kube, make_env: MakeEnv, manifest: str, reason: str
) -> None:
    ok = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fine}\ndata: {}\n---\n"
    target = make_env(manifests=ok + manifest)
    with pytest.raises(ManifestRejected) as refused:
        runtime.apply(target, progress=RecordingProgress())
    assert refused.value.code == "manifest_rejected"
    assert refused.value.details["reason"] == reason
    assert kube.live_namespaces(target.id) == []  # refused as a whole: no namespace, nothing half-applied
    assert (
        kube.items("/apis/rbac.authorization.k8s.io/v1/clusterroles", labelSelector="envhub.dev/environment")
        == []
    )


def test_an_api_version_the_cluster_does_not_serve_is_a_clear_cluster_rejected(
    runtime: KubernetesRuntime, make_env: MakeEnv
) -> None:
    cron = APP_MANIFESTS.split("---\n")[-1].replace("batch/v1beta1", "batch/v1")  # v1.20 serves only v1beta1
    target = make_env(manifests=cron)
    with pytest.raises(ClusterRejected) as refused:
        runtime.apply(target, progress=RecordingProgress())
    error = refused.value
    assert error.code == "cluster_rejected"
    assert error.message == "this cluster does not serve CronJob in batch/v1"
    assert "apiVersion the cluster supports" in error.hint
    assert error.details == {"apiVersion": "batch/v1", "kind": "CronJob"}


def test_an_invalid_object_is_cluster_rejected_with_the_field_at_fault(
    runtime: KubernetesRuntime, make_env: MakeEnv
) -> None:
    invalid = (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: broken}\n"
        "spec:\n  selector: {matchLabels: {app: one}}\n"
        "  template:\n    metadata: {labels: {app: two}}\n"
        "    spec: {containers: [{name: c, image: busybox}]}\n"
    )
    target = make_env(manifests=invalid)
    with pytest.raises(ClusterRejected) as refused:
        runtime.apply(target, progress=RecordingProgress())
    error = refused.value
    assert error.code == "cluster_rejected"
    assert "Deployment" in error.message
    assert "broken" in error.message
    assert any(cause.startswith("spec.template.metadata.labels") for cause in error.details["causes"])


def test_the_playwright_sidecar_rolls_out_beside_the_public_service_and_takes_commands(
    runtime: KubernetesRuntime, kube: Kube, make_env: MakeEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        runtime, "browser", BrowserSidecar("mcr.microsoft.com/playwright/python:v1.65.2-noble")
    )
    target = dataclasses.replace(make_env(services=[web_service()]), public_url="http://dev.example.test/")
    status = runtime.apply(target, progress=RecordingProgress())
    assert status.state is RuntimeState.ready  # the sidecar is Ready too: the pod is available
    ns = namespace_for(target)
    deployment = kube.get(f"/apis/apps/v1/namespaces/{ns}/deployments/web")
    assert deployment is not None
    pod = deployment["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["web", "playwright"]
    assert pod["containers"][1]["securityContext"]["runAsNonRoot"] is True
    assert pod["volumes"][0]["emptyDir"] == {"sizeLimit": "1Gi"}

    # An agent's command reaches the sidecar by its container name (no service is called so).
    session = runtime.exec(
        target.id,
        ["sh", "-c", 'echo "$ENVHUB_PUBLIC_URL $ENVHUB_CHROMIUM_ARGS"'],
        tty=False,
        container="playwright",
    )
    try:
        output = b""
        while chunk := session.read(timeout=30):
            output += chunk
        assert session.wait(timeout=30) == 0
    finally:
        session.close()
    url, *args = output.decode().split()
    assert (url, args[0]) == ("http://dev.example.test/", "--no-sandbox")
