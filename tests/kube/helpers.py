"""Helpers for the Kubernetes tests: admin reads of the cluster, workers on it, the apiserver's switch."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlencode

from kubernetes import client

from envhub.config import Settings
from tests.support import zygote
from tests.support.components import require_path
from tests.support.net import free_port
from tests.support.workers import Workers, worker_environment

CLUSTER_DIR = Path(__file__).resolve().parents[1] / "cluster"
MANAGED = "app.kubernetes.io/managed-by=envhub"
ENV_LABEL = "envhub.dev/environment"


def load_cluster_module() -> ModuleType:
    """tests/cluster is not a package: its modules import each other flat."""
    if str(CLUSTER_DIR) not in sys.path:
        sys.path.insert(0, str(CLUSTER_DIR))
    import cluster

    return cluster


# ``python3 -m http.server PORT``, with SO_REUSEPORT: the test kubelet runs every
# replica on this one host, where each pod would have a network namespace (and
# the port) of its own. Without it a second replica could not listen and would
# crash, and the test kubelet never counts a crashing container ready.
HTTP_SERVER = (
    "import runpy, socketserver; socketserver.TCPServer.allow_reuse_port = True; "
    "runpy.run_module('http.server', run_name='__main__', alter_sys=True)"
)


def web_service(port: int | None = None, **fields: Any) -> dict[str, Any]:
    """A container service the test kubelet runs as a real local HTTP server (any number of replicas)."""
    port = port or free_port()
    return {
        "name": "web",
        "image": "python:3.12-slim",
        "command": ["python3", "-c", HTTP_SERVER, str(port)],
        "ports": [port],
        **fields,
    }


class Kube:
    """The cluster as its admin sees it: plain JSON reads, client writes."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        self.api = cluster.api_client()
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.rbac = client.RbacAuthorizationV1Api(self.api)
        self.authorization = client.AuthorizationV1Api(self.api)

    def get(self, path: str, **query: str) -> dict[str, Any] | None:
        """GET ``path`` as JSON; None on 404."""
        url = path + (f"?{urlencode(query)}" if query else "")
        status, body = self.cluster.request(url)
        if status == 404:
            return None
        if status != 200:
            raise AssertionError(f"GET {url}: {status} {body[:300]!r}")
        data: dict[str, Any] = json.loads(body)
        return data

    def items(self, path: str, **query: str) -> list[dict[str, Any]]:
        listing = self.get(path, **query)
        return list(listing["items"]) if listing else []

    def namespaces(self, environment_id: int | None = None) -> list[dict[str, Any]]:
        selector = MANAGED if environment_id is None else f"{MANAGED},{ENV_LABEL}={environment_id}"
        return self.items("/api/v1/namespaces", labelSelector=selector)

    def live_namespaces(self, environment_id: int | None = None) -> list[str]:
        """Names of envhub namespaces that are not being deleted."""
        return sorted(
            ns["metadata"]["name"]
            for ns in self.namespaces(environment_id)
            if ns.get("status", {}).get("phase") != "Terminating"
        )

    def namespace_gone(self, name: str) -> bool:
        return self.get(f"/api/v1/namespaces/{name}") is None

    def delete_namespace(self, name: str) -> None:
        """Start deleting ``name``; does not wait (namespace finalization takes seconds)."""
        with contextlib.suppress(client.ApiException):
            self.core.delete_namespace(name)

    @contextlib.contextmanager
    def held(self, namespace: str) -> Iterator[Callable[[], None]]:
        """Keep ``namespace`` from being finalized: a ConfigMap in it with a finalizer of the
        test's own, removed by the function yielded (or at the end, whatever happened)."""
        name = "envhub-test-hold"
        body = {"metadata": {"name": name, "finalizers": ["test.envhub.dev/hold"]}}
        self.core.create_namespaced_config_map(namespace, body)

        def release() -> None:
            with contextlib.suppress(client.ApiException):
                self.core.patch_namespaced_config_map(name, namespace, {"metadata": {"finalizers": None}})

        try:
            yield release
        finally:
            release()

    def delete_managed_namespaces(self) -> None:
        for name in self.live_namespaces():
            self.delete_namespace(name)

    def kubectl(self, *args: str) -> str:
        # The pinned kubectl (tests/support/tools.py), never one found on PATH.
        done = subprocess.run(
            [str(require_path("kubectl")), *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **self.cluster.env()},
        )
        return done.stdout


class Apiserver:
    """Stops and restarts the test cluster's kube-apiserver (same flags, port and etcd data)."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster

    def _process(self) -> Any:
        return next(p for p in self.cluster._procs if p.name == "kube-apiserver")

    def stop(self) -> None:
        self._process().stop()

    def start(self) -> None:
        processes = load_cluster_module().ChildProcess  # re-exported by cluster.py's imports
        old = self._process()
        new = processes("kube-apiserver", [str(arg) for arg in old.popen.args], self.cluster.logs)
        self.cluster._procs[self.cluster._procs.index(old)] = new
        self.cluster._wait_ready(time.monotonic() + 60)


class KubeWorkers(Workers):
    """``python -m envhub.launcher worker`` processes running the Kubernetes runtime."""

    def __init__(self, settings: Settings, log_dir: Path, **extra_env: str) -> None:
        super().__init__(settings, log_dir)
        self.extra_env = extra_env

    def start(self) -> zygote.Forked:
        env = worker_environment(self.settings)
        env.update(
            ENVHUB_RUNTIME="kubernetes",
            ENVHUB_KUBECONFIG=str(self.settings.kubeconfig),
            ENVHUB_KUBE_READY_TIMEOUT=str(self.settings.kube_ready_timeout),
            **self.extra_env,
        )
        proc = zygote.spawn(
            "envhub.launcher",
            ["worker"],
            env=env,
            cwd=self.log_path.parent,  # no stray .env file
            log=self.log_path,
        )
        self.procs.append(proc)
        return proc
