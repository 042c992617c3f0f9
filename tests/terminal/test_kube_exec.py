"""The terminal bridge on the Kubernetes runtime: pods/exec through a real kube-apiserver.

The test cluster (tests/cluster) runs the apiserver and a test kubelet that
serves exec over the WebSocket channel protocol with a PTY, so the whole path
runs for real: browser protocol -> envhub bridge -> KubernetesRuntime.exec ->
apiserver -> kubelet -> a shell. Fails when the cluster binaries are missing.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from envhub.models import Environment
from tests.support.components import require
from tests.terminal.client import Term
from tests.terminal.harness import People, Serve

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cluster"))
from cluster import TestCluster

pytestmark = [pytest.mark.kube, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def cluster() -> Iterator[TestCluster]:
    require("cluster")
    with TestCluster() as running:
        yield running


def environment_pod(cluster: TestCluster, environment_id: int) -> tuple[str, str]:
    """A namespace labelled as envhub's for the environment, with one running pod."""
    from kubernetes import client

    core = client.CoreV1Api(cluster.api_client())
    # Named as envhub names them (envhub-...-<id>): envhub never uses a namespace by its labels alone.
    namespace = f"envhub-term-{uuid.uuid4().hex[:6]}-{environment_id}"
    labels = {"app.kubernetes.io/managed-by": "envhub", "envhub.dev/environment": str(environment_id)}
    core.create_namespace({"metadata": {"name": namespace, "labels": labels}})
    cluster.wait_for_service_account(namespace)
    pod: dict[str, Any] = {
        "metadata": {"name": "web-0", "labels": {"app.kubernetes.io/name": "web"}},
        "spec": {"containers": [{"name": "web", "image": "busybox", "command": ["sh", "-c", "sleep 3600"]}]},
    }
    core.create_namespaced_pod(namespace, pod)
    deadline = time.monotonic() + 30
    while core.read_namespaced_pod("web-0", namespace).status.phase != "Running":
        assert time.monotonic() < deadline, "the pod did not start"
        time.sleep(0.2)
    return namespace, "web-0"


def test_shell_through_pods_exec(
    cluster: TestCluster, serve: Serve, people: People, environment: Environment
) -> None:
    environment_pod(cluster, environment.id or 0)
    base = serve(ENVHUB_RUNTIME="kubernetes", ENVHUB_KUBECONFIG=str(cluster.kubeconfig))
    term = Term(base, environment.id or 0, auth=people.me(base), cols=100, rows=30)
    assert term.wait_control("hello")["role"] == "driver"
    term.run("echo kube-$((20+22))", "kube-42")
    term.run("stty size", "30 100")
    term.send_control("resize", cols=120, rows=35)  # channel 4
    term.wait_control("size")
    term.run("stty size", "35 120")

    # A reload reattaches to the same remote shell.
    term.run("export MARK=kept", "$")
    term.ws.close()
    again = Term(
        base,
        environment.id or 0,
        auth=people.me(base),
        session=term.session,
        client=term.client,
        cols=120,
        rows=35,
    )
    again.wait_control("hello")
    again.run("echo mark=$MARK", "mark=kept")
    again.run("exit 5", "")
    assert again.wait_control("exit")["code"] == 5


def test_exec_negotiates_the_v5_channel_protocol(cluster: TestCluster, environment: Environment) -> None:
    from envhub.runtime.kubernetes import KubernetesRuntime

    environment_pod(cluster, environment.id or 0)
    runtime = KubernetesRuntime(cluster.api_client())
    shell = runtime.exec(environment.id or 0, ["sh", "-c", "stty size; exit 0"], tty=True)
    try:
        assert shell.protocol == "v5.channel.k8s.io"
        output = b""
        deadline = time.monotonic() + 20
        while b"\n" not in output and time.monotonic() < deadline:
            try:
                output += shell.read(timeout=1.0)
            except TimeoutError:
                continue
        assert output.strip()
        assert shell.wait(10) == 0
    finally:
        shell.close()
