"""Public URLs on the Kubernetes runtime, against the real test apiserver.

Every container envhub renders, and every container of the user's manifests,
is told the environment's own URL (ENVHUB_PUBLIC_URL); the test kubelet runs
them as real processes, so what a process prints is what it was given.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from envhub.domain.kube import namespace_for
from envhub.domain.specs import EnvironmentTarget
from envhub.runtime.kubernetes import KubernetesRuntime
from tests.kube.helpers import Kube, web_service
from tests.support.net import free_port
from tests.support.runtime import RecordingProgress
from tests.support.waiting import wait_for

pytestmark = pytest.mark.kube

MakeEnv = Callable[..., EnvironmentTarget]
URL = "http://dev.shop.acme.localhost:3000/"

MANIFESTS = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: sidecar}
spec:
  selector: {matchLabels: {app: sidecar}}
  template:
    metadata: {labels: {app: sidecar}}
    spec:
      initContainers:
        - {name: setup, image: busybox, command: [sh, -c, "echo init=$ENVHUB_PUBLIC_URL"]}
      containers:
        - name: sidecar
          image: busybox
          command: [sh, -c, "echo sidecar=$ENVHUB_PUBLIC_URL self=$SELF; sleep 3600"]
          env:
            - {name: ENVHUB_PUBLIC_URL, value: "http://faked.example/"}
            - {name: SELF, value: "$(ENVHUB_PUBLIC_URL)"}
"""


def _env(container: dict[str, object]) -> dict[str, str]:
    entries = container.get("env") or []
    assert isinstance(entries, list)
    return {str(e["name"]): str(e.get("value", "")) for e in entries}


def test_every_container_is_told_the_public_url(
    runtime: KubernetesRuntime, kube: Kube, make_env: MakeEnv
) -> None:
    port = free_port()
    web = web_service(
        port, command=["sh", "-c", f"echo web=$ENVHUB_PUBLIC_URL; exec python3 -m http.server {port}"]
    )
    target = dataclasses.replace(make_env(services=[web], manifests=MANIFESTS), public_url=URL)
    runtime.apply(target, progress=RecordingProgress())
    ns = namespace_for(target)

    # What the API server stored: envhub's value, first, in every container.
    for name in ("web", "sidecar"):
        deployment = kube.get(f"/apis/apps/v1/namespaces/{ns}/deployments/{name}")
        assert deployment is not None
        pod = deployment["spec"]["template"]["spec"]
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            assert _env(container)["ENVHUB_PUBLIC_URL"] == URL, (name, container["name"])
            assert container["env"][0]["name"] in ("ENVHUB_ENVIRONMENT", "ENVHUB_PUBLIC_URL")

    # What the processes were really given (the test kubelet resolves env like a kubelet).
    def printed(app: str, container: str, text: str) -> bool:
        pods = kube.items(f"/api/v1/namespaces/{ns}/pods", labelSelector=app)
        for pod in pods:
            try:
                log = kube.core.read_namespaced_pod_log(pod["metadata"]["name"], ns, container=container)
            except Exception:  # not started yet
                continue
            if text in log:
                return True
        return False

    wait_for(
        lambda: printed("app.kubernetes.io/name=web", "web", f"web={URL}"), timeout=30, what="web's output"
    )
    wait_for(lambda: printed("app=sidecar", "setup", f"init={URL}"), timeout=30, what="the init container's")
    wait_for(
        lambda: printed("app=sidecar", "sidecar", f"sidecar={URL} self={URL}"),
        timeout=30,
        what="the manifest container's output",
    )


def test_a_target_without_a_url_sets_no_variable(
    runtime: KubernetesRuntime, kube: Kube, make_env: MakeEnv
) -> None:
    target = make_env(services=[web_service()])
    runtime.apply(target, progress=RecordingProgress())
    deployment = kube.get(f"/apis/apps/v1/namespaces/{namespace_for(target)}/deployments/web")
    assert deployment is not None
    assert "ENVHUB_PUBLIC_URL" not in _env(deployment["spec"]["template"]["spec"]["containers"][0])
