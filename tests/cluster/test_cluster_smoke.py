"""Smoke test of the real control plane + test kubelet (tests/cluster).

Fails when the binaries are not built (``make test-cluster`` builds them);
ENVHUB_BUILD_CLUSTER=1 builds them first (tests/cluster/build.sh, a few minutes
once, then cached).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from cluster import BinariesMissing, TestCluster, bin_dir  # noqa: E402
from kubernetes import client  # noqa: E402
from kubernetes.stream import stream  # noqa: E402

from tests.support.components import require, require_path  # noqa: E402

T = TypeVar("T")
BUSY_LOOP = "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.3; done"


def _ensure_binaries() -> None:
    try:
        bin_dir()
    except BinariesMissing:
        if os.environ.get("ENVHUB_BUILD_CLUSTER"):
            subprocess.run(["bash", str(HERE / "build.sh")], check=True)


_ensure_binaries()


@pytest.fixture(scope="module")
def cluster() -> Iterator[TestCluster]:
    require("cluster")
    with TestCluster() as c:
        yield c


@pytest.fixture(scope="module")
def core(cluster: TestCluster) -> Any:
    return client.CoreV1Api(cluster.api_client())


def wait_for(check: Callable[[], T | None], timeout: float = 30, what: str = "") -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        time.sleep(0.1)


def new_namespace(cluster: TestCluster, core: Any) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    cluster.wait_for_service_account(name)  # pods need the SA token (1.20 admission)
    return name


def pod_manifest(
    name: str, command: str | None = BUSY_LOOP, image: str = "busybox", **spec: Any
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": image}
    if command is not None:
        container["command"] = ["sh", "-c", command]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [container], **spec},
    }


def pod_log(core: Any, name: str, **kw: Any) -> str:
    """The pod's log, or "" while its container has not started (the kubelet says 404)."""
    try:
        return str(core.read_namespaced_pod_log(name, "default", **kw))
    except client.ApiException:
        return ""


def running_pod(core: Any, ns: str, name: str, **kw: Any) -> Any:
    core.create_namespaced_pod(ns, pod_manifest(name, **kw))
    return wait_for(
        lambda: (p := core.read_namespaced_pod(name, ns)).status.phase == "Running" and p,
        what=f"pod {ns}/{name} Running",
    )


def test_namespace_lifecycle_with_running_pod(cluster: TestCluster, core: Any) -> None:
    ns = new_namespace(cluster, core)
    running_pod(core, ns, "worker")
    core.delete_namespace(ns)

    def gone() -> bool:
        try:
            core.read_namespace(ns)
        except client.ApiException as e:
            return bool(e.status == 404)
        return False

    # Finalization needs the kubelet to finish the graceful pod delete.
    wait_for(gone, timeout=60, what=f"namespace {ns} finalized")


def test_deployment_becomes_available(cluster: TestCluster, core: Any) -> None:
    apps = client.AppsV1Api(cluster.api_client())
    labels = {"app": "web"}
    apps.create_namespaced_deployment(
        "default",
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {
                                "name": "web",
                                "image": "nginx:1.25",
                                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                            }
                        ]
                    },
                },
            },
        },
    )
    wait_for(
        lambda: (apps.read_namespaced_deployment("web", "default").status.available_replicas or 0) == 2,
        what="deployment available",
    )
    conds = {c.type: c.status for c in apps.read_namespaced_deployment("web", "default").status.conditions}
    assert conds["Available"] == "True"
    pods = core.list_namespaced_pod("default", label_selector="app=web").items
    assert [p.status.phase for p in pods] == ["Running", "Running"]
    assert all(p.spec.node_name == cluster.node_name for p in pods)
    assert all(p.status.container_statuses[0].ready for p in pods)


@pytest.mark.parametrize("protocol", ["v5.channel.k8s.io", "v4.channel.k8s.io"])
def test_exec_output_and_exit_code(cluster: TestCluster, core: Any, protocol: str) -> None:
    name = f"exec-{protocol[:2]}"
    running_pod(core, "default", name)
    resp = stream(
        core.connect_get_namespaced_pod_exec,
        name,
        "default",
        command=["sh", "-c", "echo out; echo err >&2; exit 3"],
        stdin=False,
        stdout=True,
        stderr=True,
        tty=False,
        _preload_content=False,
        _headers={"sec-websocket-protocol": protocol},
    )
    resp.run_forever(timeout=10)
    assert resp.subprotocol == protocol
    assert resp.read_stdout() == "out\n"
    assert resp.read_stderr() == "err\n"
    assert resp.returncode == 3

    ok = stream(
        core.connect_get_namespaced_pod_exec,
        name,
        "default",
        command=["cat"],
        stdin=True,
        stdout=True,
        stderr=True,
        tty=False,
        _preload_content=False,
        _headers={"sec-websocket-protocol": protocol},
    )
    ok.write_stdin("ping\n")
    if protocol.startswith("v5"):
        ok.close_channel(0)  # v5 can close stdin: cat sees EOF and exits 0
        ok.run_forever(timeout=10)
        assert ok.returncode == 0
    else:
        ok.update(timeout=5)
    assert ok.read_stdout(timeout=5) == "ping\n"
    ok.close()


def test_exec_tty_resize(core: Any) -> None:
    running_pod(core, "default", "tty")
    resp = stream(
        core.connect_get_namespaced_pod_exec,
        "tty",
        "default",
        command=["sh", "-c", "read line; stty size; echo got $line"],
        stdin=True,
        stdout=True,
        stderr=True,
        tty=True,
        _preload_content=False,
    )
    resp.write_channel(4, json.dumps({"Width": 100, "Height": 40}))
    resp.write_stdin("hello\n")
    resp.run_forever(timeout=10)
    assert resp.returncode == 0
    assert "40 100\r\ngot hello" in resp.read_stdout()


def test_logs_follow(core: Any) -> None:
    running_pod(core, "default", "logger")
    resp = core.read_namespaced_pod_log("logger", "default", follow=True, _preload_content=False)
    received: list[tuple[float, bytes]] = []
    for line in resp:
        received.append((time.monotonic(), line))
        if len(received) == 8:
            break
    resp.release_conn()
    assert [line for _, line in received] == [f"tick {i}\n".encode() for i in range(8)]
    # Ticks come every 0.3 s: lines arrive as written, not in one dump at the end.
    assert received[-1][0] - received[0][0] > 1.0
    assert core.read_namespaced_pod_log("logger", "default", tail_lines=1).startswith("tick")


def test_kubelet_reports_crash_and_image_pull_errors(core: Any) -> None:
    core.create_namespaced_pod("default", pod_manifest("crash", command="echo dying; exit 7"))
    core.create_namespaced_pod(
        "default", pod_manifest("nopull", command=None, image="example.com/does-not-exist:1")
    )

    def state(name: str) -> Any:
        statuses = core.read_namespaced_pod(name, "default").status.container_statuses
        return statuses[0] if statuses else None

    crashed = wait_for(lambda: (s := state("crash")) and s.last_state.terminated and s, what="crash reported")
    assert crashed.last_state.terminated.exit_code == 7
    assert crashed.state.waiting.reason == "CrashLoopBackOff"
    assert core.read_namespaced_pod_log("crash", "default") == "dying\n"
    pulled = wait_for(
        lambda: (s := state("nopull")) and s.state.waiting and s, what="image pull error reported"
    )
    assert pulled.state.waiting.reason == "ImagePullBackOff"
    assert core.read_namespaced_pod("nopull", "default").status.phase == "Pending"


def test_init_containers_and_env_references(core: Any) -> None:
    core.create_namespaced_secret("default", {"metadata": {"name": "creds"}, "stringData": {"pw": "s3cret"}})
    pod = pod_manifest("init", command="cat marker; echo pw=$PW ns=$NS; sleep 60")
    pod["spec"]["initContainers"] = [
        {"name": "prep", "image": "busybox", "command": ["sh", "-c", "echo prepared > marker"]}
    ]
    pod["spec"]["containers"][0]["env"] = [
        {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "pw"}}},
        {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]
    core.create_namespaced_pod("default", pod)
    # The init container ran first, in the pod's shared working directory.
    wait_for(
        lambda: pod_log(core, "init", container="main") == "prepared\npw=s3cret ns=default\n",
        what="main container output",
    )
    # The node reports statuses a moment after the output appears.
    status = wait_for(
        lambda: (
            (s := core.read_namespaced_pod("init", "default").status).init_container_statuses
            and s.init_container_statuses[0].state.terminated
            and s.phase == "Running"
            and s
        ),
        what="init container terminated, pod running",
    )
    assert status.init_container_statuses[0].state.terminated.exit_code == 0


def test_resource_quota_refuses_over_quota_pod(cluster: TestCluster, core: Any) -> None:
    ns = new_namespace(cluster, core)
    core.create_namespaced_resource_quota(ns, {"metadata": {"name": "q"}, "spec": {"hard": {"pods": "1"}}})
    # Admission refuses everything until the quota controller has computed usage.
    wait_for(lambda: core.read_namespaced_resource_quota("q", ns).status.hard, what="quota status")
    core.create_namespaced_pod(ns, pod_manifest("first"))
    with pytest.raises(client.ApiException) as err:
        core.create_namespaced_pod(ns, pod_manifest("second"))
    assert err.value.status == 403
    assert "exceeded quota" in err.value.body


def test_rbac_confines_service_account_to_its_namespace(cluster: TestCluster, core: Any) -> None:
    home, other = new_namespace(cluster, core), new_namespace(cluster, core)
    rbac = client.RbacAuthorizationV1Api(cluster.api_client())
    core.create_namespaced_service_account(home, {"metadata": {"name": "robot"}})
    rbac.create_namespaced_role(
        home,
        {
            "metadata": {"name": "pods"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
        },
    )
    rbac.create_namespaced_role_binding(
        home,
        {
            "metadata": {"name": "robot-pods"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pods"},
            "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": home}],
        },
    )
    cluster.wait_for_service_account(home, "robot")
    secret = core.read_namespaced_service_account("robot", home).secrets[0].name
    token = wait_for(
        lambda: (core.read_namespaced_secret(secret, home).data or {}).get("token"), what="token secret"
    )
    as_robot = client.CoreV1Api(cluster.api_client(token=base64.b64decode(token).decode()))

    def allowed(ns: str) -> bool:
        try:
            as_robot.list_namespaced_pod(ns)
            return True
        except client.ApiException as e:
            if e.status == 403:
                return False
            raise

    wait_for(lambda: allowed(home), what="RBAC to allow the robot in its namespace")
    assert not allowed(other)
    assert not allowed("default")


def test_kubectl_lists_namespaces(cluster: TestCluster) -> None:
    kubectl = require_path("kubectl")
    out = subprocess.run(
        [str(kubectl), "get", "namespaces", "-o", "name"],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **cluster.env()},
    ).stdout.split()
    assert {"namespace/default", "namespace/kube-system"} <= set(out)
