"""runtime/kubernetes/describing.py: a pod's containers as kubectl describe shows them."""

from __future__ import annotations

from envhub.runtime.base import ContainerUsage, EnvVarInfo, LastTermination, ProbeInfo
from envhub.runtime.kubernetes import describing
from envhub.runtime.kubernetes.readiness import describe_pod

DIGEST = "sha256:" + "ab" * 32


def test_the_digest_is_read_from_the_image_id_a_kubelet_reports() -> None:
    assert describing.image_digest({"imageID": f"docker-pullable://busybox@{DIGEST}"}) == DIGEST
    assert describing.image_digest({"imageID": f"docker.io/library/busybox@{DIGEST}"}) == DIGEST
    assert describing.image_digest({"imageID": DIGEST}) == DIGEST  # containerd gives the id alone
    assert describing.image_digest({}) == ""


def test_an_oom_killed_container_is_described_with_its_last_exit() -> None:
    pod = {
        "metadata": {"name": "api-1"},
        "spec": {
            "containers": [
                {
                    "name": "api",
                    "image": "shop/api:1",
                    "resources": {"requests": {"memory": "64Mi"}, "limits": {"memory": "96Mi"}},
                    "startupProbe": {"exec": {"command": ["cat", "/ready"]}, "failureThreshold": 30},
                    "livenessProbe": {"tcpSocket": {"port": 5432}, "periodSeconds": 20},
                    "env": [
                        {"name": "MODE", "value": "debug"},
                        {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
                        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                    ],
                    "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "APP_"}],
                },
                {"name": "side", "image": "busybox"},
            ]
        },
        "status": {
            "phase": "Running",
            "containerStatuses": [
                {
                    "name": "api",
                    "image": "docker.io/shop/api:1",
                    "imageID": f"docker.io/shop/api@{DIGEST}",
                    "ready": False,
                    "restartCount": 4,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {
                        "terminated": {
                            "exitCode": 137,
                            "reason": "OOMKilled",
                            "finishedAt": "2026-12-07T17:00:00Z",
                        }
                    },
                }
            ],
        },
    }
    info = describe_pod(pod)
    api, side = info.containers
    assert (api.image, api.image_id, api.restarts, api.reason) == (
        "docker.io/shop/api:1",
        DIGEST,
        4,
        "CrashLoopBackOff",
    )
    assert api.last_termination == LastTermination(137, "OOMKilled", "2026-12-07T17:00:00Z")
    assert api.probes == (
        ProbeInfo("liveness", "TCP :5432", "every 20s, timeout 1s, 3 failures"),
        ProbeInfo("startup", "exec cat /ready", "every 10s, timeout 1s, 30 failures"),
    )
    assert (api.requests, api.limits) == ({"memory": "64Mi"}, {"memory": "96Mi"})
    assert api.env == (
        EnvVarInfo("APP_*", source="configmap", reference="every key of config map settings"),
        EnvVarInfo("MODE", "debug"),
        EnvVarInfo("PW", source="secret", reference="secret db, key password"),
        EnvVarInfo("NODE", source="field", reference="spec.nodeName"),
    )
    # A container the kubelet has not reported yet still has its row, from the spec.
    assert (side.name, side.state, side.reason, side.image) == ("side", "waiting", "not started", "busybox")


def test_pod_metrics_are_read_per_container_in_millicores_and_bytes() -> None:
    # As metrics-server answers GET /apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods.
    found = {
        "kind": "PodMetricsList",
        "apiVersion": "metrics.k8s.io/v1beta1",
        "items": [
            {
                "metadata": {"name": "web-7d9f-x2", "namespace": "env-1"},
                "timestamp": "2026-12-07T17:00:00Z",
                "window": "15s",
                "containers": [
                    {"name": "web", "usage": {"cpu": "12345678n", "memory": "65536Ki"}},
                    {"name": "proxy", "usage": {"cpu": "2m", "memory": "12Mi"}},
                ],
            },
            {
                "metadata": {"name": "db-0"},
                "containers": [{"name": "db", "usage": {"cpu": "1", "memory": "1Gi"}}],
            },
        ],
    }
    assert describing.pod_metrics(found) == (
        ContainerUsage("db-0", "db", 1000.0, 1 << 30),
        ContainerUsage("web-7d9f-x2", "proxy", 2.0, 12 << 20),
        ContainerUsage("web-7d9f-x2", "web", 12.345678, 64 << 20),
    )
    assert describing.pod_metrics({"items": []}) == ()
