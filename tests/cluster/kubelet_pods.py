"""Pod and container bookkeeping for the test kubelet: states, status, env, kill."""

from __future__ import annotations

import base64
import contextlib
import datetime
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

from kubeapi import JSON, KubeApi
from kubelet_api import LogBuffer


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ConfigError(Exception):
    """A referenced ConfigMap/Secret key is missing (CreateContainerConfigError)."""


class RunningContainer:
    def __init__(self, spec: JSON, init: bool) -> None:
        self.spec = spec
        self.name: str = spec["name"]
        self.init = init
        self.state: JSON = {"waiting": {"reason": "ContainerCreating"}}
        self.last_state: JSON = {}
        self.restarts = 0
        self.ready = False
        self.run_id = 0  # 0 until first started; tells stale exit events apart
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: LogBuffer | None = None
        self.previous_log: LogBuffer | None = None
        self.env: dict[str, str] | None = None

    @property
    def never_started(self) -> bool:
        return self.run_id == 0

    @property
    def succeeded(self) -> bool:
        return bool(self.state.get("terminated", {}).get("exitCode") == 0)

    def waiting(self, reason: str, message: str) -> None:
        self.state = {"waiting": {"reason": reason, "message": message}}
        self.ready = False

    def running(self, proc: subprocess.Popen[bytes] | None, log: LogBuffer) -> None:
        self.previous_log, self.log = self.log, log
        self.proc = proc
        self.state = {"running": {"startedAt": now()}}
        self.ready = True

    def exited(self, code: int) -> None:
        started = self.state.get("running", {}).get("startedAt", now())
        self.state = {
            "terminated": {
                "exitCode": code,
                "reason": "Completed" if code == 0 else "Error",
                "startedAt": started,
                "finishedAt": now(),
                "containerID": self.container_id,
            }
        }
        self.ready = False
        self.proc = None
        if self.log is not None:
            self.log.finish()

    def back_off(self, delay: float) -> None:
        self.last_state = self.state
        self.waiting("CrashLoopBackOff", f"back-off {delay:.0f}s restarting failed container={self.name}")

    @property
    def container_id(self) -> str:
        return f"envhub-test://{id(self):x}-{self.run_id}"

    def status(self) -> JSON:
        image = self.spec.get("image", "")
        out: JSON = {
            "name": self.name,
            "image": image,
            "imageID": f"envhub-test://{image}",
            "ready": self.ready,
            "restartCount": self.restarts,
            "started": "running" in self.state,
            "state": self.state,
            "lastState": self.last_state,
        }
        if self.run_id:
            out["containerID"] = self.container_id
        return out


class PodRun:
    """What the kubelet runs for one pod (by uid)."""

    def __init__(self, pod: JSON, workdir: Path, pod_ip: str = "127.0.0.1") -> None:
        self.pod = pod
        self.pod_ip = pod_ip
        meta, spec = pod["metadata"], pod["spec"]
        self.uid: str = meta["uid"]
        self.init_containers = [RunningContainer(c, True) for c in spec.get("initContainers") or []]
        self.containers = [RunningContainer(c, False) for c in spec["containers"]]
        self.restart_policy: str = spec.get("restartPolicy") or "Always"
        self.dir = workdir / f"{meta['namespace']}_{meta['name']}_{self.uid[:8]}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.start_time = now()
        self.terminating = False
        self.reported = ""  # last status sent, to skip no-op patches
        self._transitions: dict[str, tuple[str, str]] = {}

    def container(self, name: str) -> RunningContainer | None:
        return next((c for c in self.init_containers + self.containers if c.name == name), None)

    def cwd(self, spec: JSON) -> str:
        wd = spec.get("workingDir")
        return wd if wd and os.path.isdir(wd) else str(self.dir)

    def kill(self, grace: float = 0.0) -> None:
        procs = [
            c.proc
            for c in self.init_containers + self.containers
            if c.proc is not None and c.proc.poll() is None
        ]
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for p in procs:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, sig)
            deadline = time.monotonic() + grace
            while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
                time.sleep(0.05)
        for c in self.init_containers + self.containers:
            if c.log is not None:
                c.log.finish()  # ends `logs -f` of command-less containers too

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def _condition(self, kind: str, ok: bool) -> JSON:
        status = "True" if ok else "False"
        prev = self._transitions.get(kind)
        if prev is None or prev[0] != status:
            prev = self._transitions[kind] = (status, now())
        return {"type": kind, "status": status, "lastProbeTime": None, "lastTransitionTime": prev[1]}

    def status(self) -> JSON:
        init_done = all(c.succeeded for c in self.init_containers)
        init_failed = self.restart_policy == "Never" and any(
            "terminated" in c.state and not c.succeeded for c in self.init_containers
        )
        ended = [c.state["terminated"] for c in self.containers if "terminated" in c.state]
        if init_failed:
            phase = "Failed"
        elif not init_done:
            phase = "Pending"
        elif len(ended) == len(self.containers):
            phase = "Succeeded" if all(t["exitCode"] == 0 for t in ended) else "Failed"
        elif any(not c.never_started for c in self.containers):
            phase = "Running"
        else:
            phase = "Pending"
        ready = init_done and all(c.ready for c in self.containers)
        status: JSON = {
            "phase": phase,
            "hostIP": "127.0.0.1",
            "podIP": self.pod_ip,
            "podIPs": [{"ip": self.pod_ip}],
            "startTime": self.start_time,
            "conditions": [
                self._condition("Initialized", init_done),
                self._condition("Ready", ready),
                self._condition("ContainersReady", ready),
                self._condition("PodScheduled", True),
            ],
            "containerStatuses": [c.status() for c in self.containers],
        }
        if self.init_containers:
            status["initContainerStatuses"] = [c.status() for c in self.init_containers]
        return status


_VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def container_env(api: KubeApi, run: PodRun, spec: JSON) -> dict[str, str]:
    """The environment a kubelet would give the container (host PATH, no image env)."""
    pod = run.pod
    meta, ns = pod["metadata"], pod["metadata"]["namespace"]
    server = urlsplit(api.server)
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        "HOME": str(run.dir),
        "HOSTNAME": meta["name"],
        "LANG": "C.UTF-8",
        "KUBERNETES_SERVICE_HOST": server.hostname or "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": str(server.port or 443),
    }
    cache: dict[str, JSON | None] = {}

    def fetch(kind: str, name: str) -> JSON | None:
        path = f"/api/v1/namespaces/{ns}/{kind}/{name}"
        if path not in cache:
            cache[path] = api.get_or_none(path)
        return cache[path]

    def data_of(kind: str, obj: JSON) -> dict[str, str]:
        if kind == "secrets":
            return {
                k: base64.b64decode(v).decode(errors="replace") for k, v in (obj.get("data") or {}).items()
            }
        return dict(obj.get("data") or {})

    for src in spec.get("envFrom") or []:
        for kind, key in (("configmaps", "configMapRef"), ("secrets", "secretRef")):
            if key in src:
                obj = fetch(kind, src[key]["name"])
                if obj is None and not src[key].get("optional"):
                    raise ConfigError(f'{kind[:-1]} "{src[key]["name"]}" not found')
                for k, v in data_of(kind, obj or {}).items():
                    env[src.get("prefix", "") + k] = v

    field_values = {
        "metadata.name": meta["name"],
        "metadata.namespace": ns,
        "metadata.uid": meta["uid"],
        "spec.nodeName": pod["spec"].get("nodeName", ""),
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName", ""),
        "status.podIP": run.pod_ip,
        "status.hostIP": "127.0.0.1",
    }
    for var in spec.get("env") or []:
        name, source = var["name"], var.get("valueFrom")
        if source is None:
            # $(VAR) expands earlier variables, as in a real pod.
            env[name] = _VAR_REF.sub(lambda m: env.get(m.group(1), m.group(0)), var.get("value", ""))
        elif "fieldRef" in source:
            path = source["fieldRef"]["fieldPath"]
            m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
            env[name] = (meta.get(m.group(1)) or {}).get(m.group(2), "") if m else field_values.get(path, "")
        else:
            for kind, key in (("configmaps", "configMapKeyRef"), ("secrets", "secretKeyRef")):
                if key in source:
                    ref = source[key]
                    obj = fetch(kind, ref["name"])
                    value = data_of(kind, obj).get(ref["key"]) if obj else None
                    if value is not None:
                        env[name] = value
                    elif not ref.get("optional"):
                        raise ConfigError(f'key "{ref["key"]}" of {kind[:-1]} "{ref["name"]}" not found')
    return env
