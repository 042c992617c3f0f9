"""kubectl, pointed at the same cluster, sees envhub's namespaces and objects with their labels."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable

import pytest

from envhub.domain.kube import namespace_for
from envhub.domain.specs import EnvironmentTarget
from envhub.runtime.kubernetes import KubernetesRuntime
from tests.kube.helpers import Kube, web_service
from tests.support.runtime import RecordingProgress

pytestmark = pytest.mark.kube


def test_kubectl_lists_envhub_namespaces_and_objects_with_their_labels(
    runtime: KubernetesRuntime, kube: Kube, make_env: Callable[..., EnvironmentTarget]
) -> None:
    target = make_env(services=[web_service()], egress={"cidrs": ["10.9.0.0/16"]})
    runtime.apply(target, progress=RecordingProgress())
    ns = namespace_for(target)

    listed = json.loads(kube.kubectl("get", "ns", "-l", "app.kubernetes.io/managed-by=envhub", "-o", "json"))
    ours = [item for item in listed["items"] if item["metadata"]["name"] == ns]
    assert len(ours) == 1
    assert (
        ours[0]["metadata"]["labels"]
        | {
            "app.kubernetes.io/managed-by": "envhub",
            "envhub.dev/environment": str(target.id),
            "envhub.dev/project": "shop",
            "envhub.dev/team": "acme",
        }
        == ours[0]["metadata"]["labels"]
    )
    assert kube.kubectl("get", "ns", "-l", f"envhub.dev/environment={target.id}", "-o", "name").split() == [
        f"namespace/{ns}"
    ]

    kinds = "deploy,svc,netpol,quota,limitrange,sa,role,rolebinding"
    objects = json.loads(
        kube.kubectl("get", kinds, "-n", ns, "-l", f"envhub.dev/environment={target.id}", "-o", "json")
    )
    found = Counter(item["kind"] for item in objects["items"])
    assert found == {
        "Deployment": 1,
        "Service": 1,
        "NetworkPolicy": 5,
        "ResourceQuota": 1,
        "LimitRange": 1,
        "ServiceAccount": 1,
        "Role": 3,  # the workload account's, and the team's view and edit (domain/kube/access.py)
        "RoleBinding": 3,
    }
    for item in objects["items"]:
        labels = item["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "envhub", item["kind"]
        assert labels["envhub.dev/environment"] == str(target.id), item["kind"]

    table = kube.kubectl("get", "deploy", "web", "-n", ns)
    assert table.split("\n")[1].split()[:2] == ["web", "1/1"]  # READY as kubectl computes it
    managers = json.loads(
        kube.kubectl("get", "deploy", "web", "-n", ns, "-o", "json", "--show-managed-fields")
    )
    assert "envhub" in {entry["manager"] for entry in managers["metadata"]["managedFields"]}
