"""A real Kubernetes control plane for tests: etcd + kube-apiserver +
kube-controller-manager (v1.20.2, built by build.sh) + the test kubelet.

    with TestCluster() as cluster:
        os.environ["KUBECONFIG"] = str(cluster.kubeconfig)

CLI:  python tests/cluster/cluster.py up|down|env|status
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

# The sibling modules are imported flat: tests/cluster is not a package, and the
# CLI runs this file directly.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from kubeapi import KubeApi
from kubelet import TestKubelet
from pki import TestPKI
from processes import BinariesMissing, ChildProcess, bin_dir, free_port

__all__ = ["BinariesMissing", "TestCluster", "bin_dir"]

# The CLI's supervisor records itself here so `down`/`env` find it.
STATE_FILE = Path(os.environ.get("ENVHUB_CLUSTER_STATE", "/tmp/envhub-testcluster.json"))
SERVICE_CIDR = "10.0.0.0/24"
# Controllers that need a cloud provider, pod CIDRs or kubelet heartbeats: without
# them they only log errors (nodelifecycle would even evict pods from our node).
DISABLED_CONTROLLERS = ("nodeipam", "nodelifecycle", "cloud-node-lifecycle", "route", "service")


class TestCluster:
    """etcd + kube-apiserver + kube-controller-manager (+ test kubelet) on loopback."""

    __test__ = False

    def __init__(
        self,
        *,
        kubelet: bool = True,
        node_name: str = "envhub-test-node",
        workdir: Path | None = None,
        keep_workdir: bool = False,
        pod_ip: str = "127.0.0.1",
        audit_log: Path | None = None,
    ) -> None:
        self.bin = bin_dir()
        # Measuring only (bench/releases.py): the apiserver logs every request it
        # served (who, user agent, verb, object), one JSON line each.
        self.audit_log = audit_log
        self.pod_ip = pod_ip
        self.node_name = node_name
        self._with_kubelet = kubelet
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="envhub-cluster-"))
        self._keep = keep_workdir or os.environ.get("ENVHUB_CLUSTER_KEEP") == "1"
        self.logs = self.workdir / "logs"
        self.token = secrets.token_urlsafe(24)
        self.etcd_port = free_port()
        self.etcd_peer_port = free_port()
        self.port = free_port()
        self.server = f"https://127.0.0.1:{self.port}"
        self.kubeconfig = self.workdir / "kubeconfig"
        self.ca_cert = self.workdir / "pki" / "ca.crt"  # written by start()
        self._procs: list[ChildProcess] = []
        self._kubelet: TestKubelet | None = None
        self.started_in: float | None = None

    # -- lifecycle -------------------------------------------------------------
    def __enter__(self) -> TestCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 60.0) -> TestCluster:
        t0 = time.monotonic()
        try:
            self._start(t0 + timeout)
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - t0
        return self

    def _start(self, deadline: float) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        pki = TestPKI(self.workdir / "pki")
        serving = pki.serving_cert(
            "apiserver",
            dns=[
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ],
            ips=["127.0.0.1", "10.0.0.1"],
        )
        sa = pki.service_account_keys()
        tokens = self.workdir / "tokens.csv"
        tokens.write_text(f'{self.token},admin,admin,"system:masters"\n')
        tokens.chmod(0o600)
        self._write_kubeconfig()

        audit = self._audit_flags()
        etcd_url = f"http://127.0.0.1:{self.etcd_port}"
        peer_url = f"http://127.0.0.1:{self.etcd_peer_port}"
        # The apiserver retries etcd by itself, so both start at once.
        self._spawn(
            "etcd",
            [
                "--name=test",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=test={peer_url}",
                "--unsafe-no-fsync",
                "--logger=zap",
                "--log-level=warn",
            ],
        )
        self._spawn(
            "kube-apiserver",
            [
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.port}",
                "--insecure-port=0",
                f"--tls-cert-file={serving.cert}",
                f"--tls-private-key-file={serving.key}",
                f"--client-ca-file={pki.ca.cert}",
                f"--token-auth-file={tokens}",
                "--authorization-mode=Node,RBAC",
                f"--service-account-key-file={sa.cert}",
                f"--service-account-signing-key-file={sa.key}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--endpoint-reconciler-type=none",
                "--enable-priority-and-fairness=false",
                "--allow-privileged=true",
                # Logs/exec go to the node's InternalIP (127.0.0.1) and the test kubelet's port.
                "--kubelet-preferred-address-types=InternalIP",
                "--profiling=false",
                "--v=1",
                *audit,
            ],
        )
        self._wait_ready(deadline)
        self._spawn(
            "kube-controller-manager",
            [
                f"--kubeconfig={self.kubeconfig}",
                "--bind-address=127.0.0.1",
                "--port=0",
                "--secure-port=0",
                "--leader-elect=false",
                "--controllers=*," + ",".join(f"-{c}" for c in DISABLED_CONTROLLERS),
                f"--service-account-private-key-file={sa.key}",
                f"--root-ca-file={pki.ca.cert}",
                f"--cluster-signing-cert-file={pki.ca.cert}",
                f"--cluster-signing-key-file={pki.ca.key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--profiling=false",
                "--v=1",
            ],
        )
        if self._with_kubelet:
            self._kubelet = TestKubelet(
                KubeApi(self.server, self.token, self.ca_cert),
                node_name=self.node_name,
                tls=pki.serving_cert("kubelet", dns=["localhost", self.node_name], ips=["127.0.0.1"]),
                workdir=self.workdir / "kubelet",
                pod_ip=self.pod_ip,
            )
            self._kubelet.start()
        # Pods can only be created once the token controller has issued the
        # ServiceAccount token secret (ServiceAccount admission in 1.20).
        self.wait_for_service_account("default", deadline=deadline)

    def stop(self) -> None:
        if self._kubelet is not None:
            self._kubelet.stop()
            self._kubelet = None
        for proc in reversed(self._procs):
            proc.stop()
        self._procs.clear()
        if self._own_workdir and not self._keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- helpers ---------------------------------------------------------------
    def _audit_flags(self) -> list[str]:
        if self.audit_log is None:
            return []
        policy = self.workdir / "audit-policy.json"
        policy.write_text(
            json.dumps(
                {
                    "apiVersion": "audit.k8s.io/v1",
                    "kind": "Policy",
                    "omitStages": ["RequestReceived", "ResponseStarted"],
                    "rules": [{"level": "Metadata"}],
                }
            )
        )
        return [
            f"--audit-policy-file={policy}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json",
            "--audit-log-mode=blocking",
            "--audit-log-maxsize=0",
        ]

    def _spawn(self, name: str, args: list[str]) -> None:
        self._procs.append(ChildProcess(name, [str(self.bin / name), *args], self.logs))

    def _check_alive(self) -> None:
        for proc in self._procs:
            proc.check_alive()

    def _ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_cert))

    def request(self, path: str, token: str | None = None) -> tuple[int, bytes]:
        """GET `path` on the apiserver; returns (status, body) without raising on 4xx."""
        req = urllib.request.Request(
            self.server + path, headers={"Authorization": f"Bearer {token or self.token}"}
        )
        try:
            with urllib.request.urlopen(req, context=self._ssl_context(), timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def _wait_ready(self, deadline: float) -> None:
        while True:
            self._check_alive()
            try:
                status, _ = self.request("/readyz")
                if status == 200:
                    return
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("kube-apiserver not ready:\n" + self._procs[-1].log_tail())
            time.sleep(0.1)

    def wait_for_service_account(
        self, namespace: str, name: str = "default", deadline: float | None = None
    ) -> None:
        """Wait until the ServiceAccount exists and has its token secret."""
        deadline = deadline or time.monotonic() + 30
        path = f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}"
        while True:
            self._check_alive()
            status, body = self.request(path)
            if status == 200 and json.loads(body).get("secrets"):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"no token for serviceaccount {namespace}/{name}")
            time.sleep(0.1)

    def _write_kubeconfig(self) -> None:
        ca = base64.b64encode(self.ca_cert.read_bytes()).decode()
        # JSON is valid YAML: kubectl and the Python client both read it.
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "envhub-test",
            "clusters": [
                {"name": "envhub-test", "cluster": {"server": self.server, "certificate-authority-data": ca}}
            ],
            "users": [{"name": "admin", "user": {"token": self.token}}],
            "contexts": [
                {
                    "name": "envhub-test",
                    "context": {"cluster": "envhub-test", "user": "admin", "namespace": "default"},
                }
            ],
        }
        self.kubeconfig.write_text(json.dumps(config, indent=2))
        self.kubeconfig.chmod(0o600)

    def api_client(self, token: str | None = None) -> Any:
        """A `kubernetes.client.ApiClient` for the admin (or the given bearer token)."""
        from kubernetes import client

        cfg = client.Configuration()
        cfg.host = self.server
        cfg.ssl_ca_cert = str(self.ca_cert)
        cfg.api_key = {"authorization": f"Bearer {token or self.token}"}
        return client.ApiClient(cfg)

    def env(self) -> dict[str, str]:
        return {"KUBECONFIG": str(self.kubeconfig)}


# -- CLI -------------------------------------------------------------------------
def _alive(pid: int) -> bool:
    # The supervisor is not our child: a zombie of it (not yet reaped by init)
    # still answers kill(pid, 0), so look at its state instead.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _read_state() -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        return None
    return state if _alive(int(state.get("pid", 0))) else None


def _serve() -> int:
    """Run a cluster until SIGTERM/SIGINT (the supervisor behind `up`)."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with TestCluster() as cluster:
        STATE_FILE.write_text(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "kubeconfig": str(cluster.kubeconfig),
                    "server": cluster.server,
                    "workdir": str(cluster.workdir),
                    "started_in": round(cluster.started_in or 0, 2),
                }
            )
        )
        try:
            stop.wait()
        finally:
            STATE_FILE.unlink(missing_ok=True)
    return 0


def _up(foreground: bool) -> int:
    if (state := _read_state()) is not None:
        print(f"export KUBECONFIG={state['kubeconfig']}")
        return 0
    if foreground:
        return _serve()
    STATE_FILE.unlink(missing_ok=True)
    log = Path(tempfile.gettempdir()) / "envhub-testcluster.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, __file__, "_serve"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 90
    while (state := _read_state()) is None:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            sys.stderr.write(log.read_text(errors="replace"))
            return 1
        time.sleep(0.2)
    print(
        f"# cluster up in {state['started_in']}s at {state['server']} (pid {state['pid']})", file=sys.stderr
    )
    print(f"export KUBECONFIG={state['kubeconfig']}")
    return 0


def _down() -> int:
    state = _read_state()
    if state is None:
        print("no cluster running", file=sys.stderr)
        return 0
    os.kill(state["pid"], signal.SIGTERM)
    deadline = time.monotonic() + 30
    while _alive(state["pid"]):  # the supervisor exits after its children
        if time.monotonic() > deadline:
            print(f"cluster supervisor {state['pid']} did not stop", file=sys.stderr)
            return 1
        time.sleep(0.1)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start a cluster in the background, print KUBECONFIG")
    up.add_argument("--foreground", action="store_true", help="run until Ctrl-C")
    sub.add_parser("down", help="stop the cluster started by `up`")
    sub.add_parser("env", help="print `export KUBECONFIG=...` for the running cluster")
    sub.add_parser("status", help="print the running cluster's state as JSON")
    sub.add_parser("_serve")
    args = parser.parse_args(argv)
    if args.cmd == "up":
        return _up(args.foreground)
    if args.cmd == "down":
        return _down()
    if args.cmd == "_serve":
        return _serve()
    state = _read_state()
    if state is None:
        print("no cluster running (python tests/cluster/cluster.py up)", file=sys.stderr)
        return 1
    print(json.dumps(state, indent=2) if args.cmd == "status" else f"export KUBECONFIG={state['kubeconfig']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
