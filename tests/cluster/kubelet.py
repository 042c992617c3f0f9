"""A test kubelet: one Node whose "containers" are local processes.

It registers a Node, binds every unscheduled pod to it (there is no scheduler),
runs each container's `command`/`args` as a local process (no image, no
isolation: test pods run as the test user) and reports pod status as a kubelet
would, so Deployments become Available. Containers without a command are
reported Running without a process; one with a process is Ready once it
has stayed up for a moment. An image whose name contains
"does-not-exist" reports ImagePullBackOff. Logs and exec are served by
kubelet_api.KubeletServer.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import shutil
import subprocess
import threading
import traceback
from pathlib import Path
from typing import Any

from kubeapi import JSON, SMP, ApiError, KubeApi
from kubelet_api import KubeletServer, LogBuffer
from kubelet_exec import ExecTarget
from kubelet_pods import ConfigError, PodRun, RunningContainer, container_env, now
from pki import CertPair
from processes import die_with_parent

UNPULLABLE_MARKER = "does-not-exist"
BACKOFF_BASE, BACKOFF_MAX = 2.0, 30.0  # real kubelet: 10 s doubling to 300 s
# A started process counts as ready once it has stayed up this long. A real
# kubelet sees a container's state on its next relist (PLEG, every second), so
# one that dies at once is seen exited, never ready; reporting it ready first
# would let a crashing StatefulSet or DaemonSet count as rolled out.
SETTLE_SECONDS = 0.3


class TestKubelet:
    """Start with start(), stop with stop(); all API writes happen on one worker thread."""

    __test__ = False

    def __init__(
        self, api: KubeApi, *, node_name: str, tls: CertPair, workdir: Path, pod_ip: str = "127.0.0.1"
    ) -> None:
        # The address pods report. Endpoints may not name loopback, so a Service's
        # endpoints (and the API server's service proxy) need another of this
        # machine's addresses here; processes still listen on all of them.
        self.pod_ip = pod_ip
        self.api = api
        self.node_name = node_name
        self.workdir = workdir
        self.server = KubeletServer(self, tls)
        self._events: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self._pods: dict[str, PodRun] = {}  # by uid; changed only by the worker thread
        self._lock = threading.Lock()  # for changes to _pods vs. reads by API threads
        self._bind_tried: set[str] = set()
        self._stopping = threading.Event()
        self._threads = [
            threading.Thread(target=self._watch_loop, name="kubelet-watch", daemon=True),
            threading.Thread(target=self._work_loop, name="kubelet-worker", daemon=True),
        ]
        self._run_ids = itertools.count(1)

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.server.start()
        self._register_node()
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stopping.set()
        self.api.close_watch()
        self._events.put(("stop",))
        for t in self._threads:
            t.join(timeout=10)
        with self._lock:
            pods = list(self._pods.values())
            self._pods.clear()
        for pod in pods:
            pod.kill()
        self.server.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _register_node(self) -> None:
        ts = now()
        resources = {"cpu": "64", "memory": "256Gi", "pods": "1000", "ephemeral-storage": "1Ti"}
        conditions = [
            {
                "type": t,
                "status": "False",
                "reason": f"KubeletHasNo{t}",
                "lastHeartbeatTime": ts,
                "lastTransitionTime": ts,
            }
            for t in ("MemoryPressure", "DiskPressure", "PIDPressure")
        ] + [
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "envhub test kubelet",
                "lastHeartbeatTime": ts,
                "lastTransitionTime": ts,
            }
        ]
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.node_name,
                "labels": {
                    "kubernetes.io/hostname": self.node_name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "beta.kubernetes.io/os": "linux",
                    "beta.kubernetes.io/arch": "amd64",
                },
            },
            # Node create keeps status (NodeStrategy), so one call registers everything.
            "status": {
                "capacity": resources,
                "allocatable": resources,
                "conditions": conditions,
                "addresses": [
                    {"type": "InternalIP", "address": "127.0.0.1"},
                    {"type": "Hostname", "address": self.node_name},
                ],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": self.server.port}},
                "nodeInfo": {
                    "machineID": "envhub-test",
                    "systemUUID": "envhub-test",
                    "bootID": "envhub-test",
                    "kernelVersion": os.uname().release,
                    "osImage": "envhub test kubelet",
                    "operatingSystem": "linux",
                    "architecture": "amd64",
                    "containerRuntimeVersion": "envhub-test://1",
                    "kubeletVersion": "v1.20.2",
                    "kubeProxyVersion": "v1.20.2",
                },
            },
        }
        try:
            self.api.call("POST", "/api/v1/nodes", node)
        except ApiError as e:
            if e.status != 409:
                raise
            self.api.call("PATCH", f"/api/v1/nodes/{self.node_name}/status", {"status": node["status"]}, SMP)
        # TaintNodesByCondition admission tainted the new node not-ready; a real
        # node lifecycle controller would lift it once Ready (ours is disabled).
        self.api.call("PATCH", f"/api/v1/nodes/{self.node_name}", {"spec": {"taints": None}}, SMP)

    # -- watch: list, then watch from the list's resourceVersion ---------------
    def _watch_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                listing = self.api.call("GET", "/api/v1/pods")
                uids = set()
                for pod in listing.get("items", []):
                    uids.add(pod["metadata"]["uid"])
                    self._events.put(("sync", pod))
                self._events.put(("relist", uids))
                rv = listing["metadata"]["resourceVersion"]
                for event in self.api.watch(
                    f"/api/v1/pods?watch=1&resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds=600"
                ):
                    kind = event.get("type")
                    if kind == "ERROR":  # typically 410 Gone: relist
                        break
                    if kind in ("ADDED", "MODIFIED"):
                        self._events.put(("sync", event["object"]))
                    elif kind == "DELETED":
                        self._events.put(("deleted", event["object"]))
            except (OSError, ApiError, ValueError):
                if self._stopping.wait(0.5):
                    return

    # -- worker: the only thread that changes pods and writes pod status --------
    def _work_loop(self) -> None:
        while True:
            event = self._events.get()
            if event[0] == "stop":
                return
            try:
                getattr(self, f"_on_{event[0]}")(*event[1:])
            except Exception:
                traceback.print_exc()

    def _on_sync(self, pod: JSON) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        uid = meta["uid"]
        if not spec.get("nodeName"):
            if not meta.get("deletionTimestamp") and uid not in self._bind_tried:
                self._bind_tried.add(uid)
                self._bind(meta["namespace"], meta["name"])
            return
        if spec["nodeName"] != self.node_name:
            return
        run = self._pods.get(uid)
        if meta.get("deletionTimestamp"):
            if run is None or not run.terminating:
                self._terminate(pod, run)
            return
        if run is None:
            run = PodRun(pod, self.workdir, self.pod_ip)
            with self._lock:
                self._pods[uid] = run
            self._advance(run)
        run.pod = pod

    def _on_deleted(self, pod: JSON) -> None:
        with self._lock:
            run = self._pods.pop(pod["metadata"]["uid"], None)
        if run is not None:
            run.kill()
            run.cleanup()

    def _on_relist(self, uids: set[str]) -> None:
        for uid in [u for u in self._pods if u not in uids]:
            with self._lock:
                run = self._pods.pop(uid)
            run.kill()
            run.cleanup()

    def _on_exited(self, uid: str, name: str, run_id: int, code: int) -> None:
        run = self._pods.get(uid)
        c = run.container(name) if run else None
        if run is None or c is None or c.run_id != run_id:
            return  # a stale process of a deleted pod or an earlier run
        c.exited(code)
        if run.terminating:
            return
        restart = run.restart_policy == "Always" or (run.restart_policy == "OnFailure" and code != 0)
        if c.init and code == 0:
            restart = False
        if restart:
            delay = min(BACKOFF_BASE * 2**c.restarts, BACKOFF_MAX)
            c.back_off(delay)
            self._later(delay, ("restart", uid, name, run_id))
        self._advance(run)

    def _on_restart(self, uid: str, name: str, run_id: int) -> None:
        run = self._pods.get(uid)
        c = run.container(name) if run else None
        if run is None or c is None or c.run_id != run_id or run.terminating:
            return
        c.restarts += 1
        self._start_container(run, c)
        self._report(run)

    def _on_settled(self, uid: str, name: str, run_id: int) -> None:
        run = self._pods.get(uid)
        c = run.container(name) if run else None
        if run is None or c is None or c.run_id != run_id or run.terminating or "running" not in c.state:
            return  # exited (or restarted) before it settled: never ready
        c.ready = True
        self._report(run)

    def _later(self, delay: float, event: tuple[Any, ...]) -> None:
        timer = threading.Timer(delay, self._events.put, args=(event,))
        timer.daemon = True
        timer.start()

    # -- pod lifecycle ---------------------------------------------------------
    def _bind(self, namespace: str, name: str) -> None:
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name},
        }
        try:
            self.api.call("POST", f"/api/v1/namespaces/{namespace}/pods/{name}/binding", binding)
        except ApiError as e:
            if e.status not in (404, 409):  # gone, or already bound
                raise

    def _advance(self, run: PodRun) -> None:
        """Start whatever may start now: init containers in order, then all others."""
        for c in run.init_containers:
            if c.never_started:
                self._start_container(run, c)
            if not c.succeeded:  # still running, backing off, or failed for good
                self._report(run)
                return
        for c in run.containers:
            if c.never_started:
                self._start_container(run, c)
        self._report(run)

    def _start_container(self, run: PodRun, c: RunningContainer) -> None:
        image = c.spec.get("image", "")
        if UNPULLABLE_MARKER in image:
            c.waiting("ImagePullBackOff", f'Back-off pulling image "{image}"')
            return
        try:
            c.env = container_env(self.api, run, c.spec)
        except ConfigError as e:
            c.waiting("CreateContainerConfigError", str(e))
            self._later(BACKOFF_BASE, ("restart", run.uid, c.name, c.run_id))
            return
        c.run_id = next(self._run_ids)
        argv = list(c.spec.get("command") or []) + list(c.spec.get("args") or [])
        if not c.spec.get("command"):
            # Nothing to run: an image's entrypoint is not known here.
            c.running(None, LogBuffer())
            if c.init:
                c.exited(0)
            return
        log = LogBuffer()
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=run.cwd(c.spec),
                env=c.env,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        except OSError as e:
            c.running(None, log)
            log.write(f"failed to start {argv}: {e}\n".encode())
            self._events.put(("exited", run.uid, c.name, c.run_id, 128))
            return
        c.running(proc, log)
        c.ready = False
        self._later(SETTLE_SECONDS, ("settled", run.uid, c.name, c.run_id))
        threading.Thread(
            target=self._pipe_logs, daemon=True, args=(proc, log, run.uid, c.name, c.run_id)
        ).start()

    def _pipe_logs(
        self, proc: subprocess.Popen[bytes], log: LogBuffer, uid: str, name: str, run_id: int
    ) -> None:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        while data := os.read(fd, 65536):
            log.write(data)
        code = proc.wait()
        proc.stdout.close()
        log.finish()
        self._events.put(("exited", uid, name, run_id, 128 - code if code < 0 else code))

    def _terminate(self, pod: JSON, run: PodRun | None) -> None:
        """The apiserver marked the pod terminating: stop it, then finish the delete."""
        if run is not None:
            run.terminating = True
            grace = pod["metadata"].get("deletionGracePeriodSeconds") or 0
            run.kill(grace=min(float(grace), 2.0))
        meta = pod["metadata"]
        try:
            self.api.call(
                "DELETE",
                f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
                {
                    "apiVersion": "v1",
                    "kind": "DeleteOptions",
                    "gracePeriodSeconds": 0,
                    "preconditions": {"uid": meta["uid"]},
                },
            )
        except ApiError as e:
            if e.status not in (404, 409):
                raise

    def _report(self, run: PodRun) -> None:
        status = run.status()
        key = json.dumps(status, sort_keys=True)
        if key == run.reported:
            return
        ns, name = run.pod["metadata"]["namespace"], run.pod["metadata"]["name"]
        try:
            # metadata.uid makes the patch fail on a re-created pod of the same name.
            self.api.call(
                "PATCH",
                f"/api/v1/namespaces/{ns}/pods/{name}/status",
                {"metadata": {"uid": run.uid}, "status": status},
                SMP,
            )
            run.reported = key
        except ApiError as e:
            if e.status not in (404, 409, 422):
                raise

    # -- kubelet_api.Runtime ---------------------------------------------------
    def _find(self, namespace: str, pod: str, container: str) -> tuple[PodRun, RunningContainer] | None:
        with self._lock:
            for run in self._pods.values():
                meta = run.pod["metadata"]
                if meta["namespace"] == namespace and meta["name"] == pod:
                    c = run.container(container)
                    return (run, c) if c else None
        return None

    def exec_target(self, namespace: str, pod: str, container: str) -> ExecTarget | None:
        found = self._find(namespace, pod, container)
        if found is None or found[1].env is None:
            return None  # never started (e.g. ImagePullBackOff): nothing to exec into
        run, c = found
        return ExecTarget(env=dict(c.env or {}), cwd=run.cwd(c.spec))

    def log_buffer(self, namespace: str, pod: str, container: str, previous: bool) -> LogBuffer | None:
        found = self._find(namespace, pod, container)
        if found is None:
            return None
        return found[1].previous_log if previous else found[1].log
