"""Sleep and wake on the real API server: workloads scale to zero keeping their replicas, and back.

The test kubelet runs the pods as local processes, so waking waits for a real rollout.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from envhub.domain.kube import namespace_for
from envhub.domain.kube.dormancy import REPLICAS_ANNOTATION
from envhub.domain.specs import EnvironmentTarget
from envhub.runtime.base import RuntimeState
from envhub.runtime.kubernetes import KubernetesRuntime
from tests.kube.helpers import Kube
from tests.support.runtime import RecordingProgress

pytestmark = pytest.mark.kube

MANIFESTS = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: busybox, command: [sh, -c, "sleep 3600"]}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 1
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: db, image: busybox, command: [sh, -c, "sleep 3600"]}]
"""


def test_sleep_scales_to_zero_keeping_replicas_and_wake_restores_them(
    runtime: KubernetesRuntime, kube: Kube, make_env: Callable[..., EnvironmentTarget]
) -> None:
    target = make_env(manifests=MANIFESTS)
    assert runtime.apply(target, progress=RecordingProgress()).state is RuntimeState.ready
    ns = namespace_for(target)

    def scaled() -> dict[str, tuple[int, str | None]]:
        found = {}
        for kind, name in (("deployments", "web"), ("statefulsets", "db")):
            obj = kube.get(f"/apis/apps/v1/namespaces/{ns}/{kind}/{name}")
            assert obj is not None
            annotations = obj["metadata"].get("annotations") or {}
            found[name] = (obj["spec"]["replicas"], annotations.get(REPLICAS_ANNOTATION))
        return found

    progress = RecordingProgress()
    assert runtime.sleep(target.id, progress=progress) == "scaled to zero: Deployment/web, StatefulSet/db"
    assert scaled() == {"web": (0, "2"), "db": (0, "1")}
    # A job killed after the first sleep runs it again: the recorded replicas are not lost.
    assert runtime.sleep(target.id, progress=RecordingProgress()) == "nothing was running"
    assert scaled() == {"web": (0, "2"), "db": (0, "1")}
    assert kube.get(f"/api/v1/namespaces/{ns}") is not None  # the namespace and what it stores stay

    status = runtime.wake(target, progress=RecordingProgress())
    assert status.state is RuntimeState.ready
    assert scaled() == {"web": (2, None), "db": (1, None)}
    web = kube.get(f"/apis/apps/v1/namespaces/{ns}/deployments/web")
    assert web is not None
    assert web["status"].get("readyReplicas") == 2  # rolled out again before wake said ready
    # Waking what is awake changes nothing; sleeping a namespace that is gone is quiet.
    assert runtime.wake(target, progress=RecordingProgress()).state is RuntimeState.ready
    assert runtime.sleep(987_654, progress=RecordingProgress()) == "no namespace"

    # A redeploy of a sleeping environment (an apply) wakes what slept: a manifest without a
    # replicas field gets back the count it slept with.
    runtime.sleep(target.id, progress=RecordingProgress())
    assert runtime.apply(target, progress=RecordingProgress()).state is RuntimeState.ready
    assert scaled() == {"web": (2, None), "db": (1, None)}
