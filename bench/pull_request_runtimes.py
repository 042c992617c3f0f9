"""The runtimes bench/pull_requests.py runs pull requests on, and each one's floor.

Both serve the same small app, Python's HTTP server answering on its port:

* local: the project's command, run by the local runtime from the repository
  checked out at the pull request's commit;
* kubernetes: an image-based service, so a pull request's environment is a
  Deployment and a Service in a namespace of its own, on the test cluster
  (tests/cluster: a real kube-apiserver, etcd and controller-manager). Its test
  kubelet runs the container's command as a local process and reports the pod
  running and ready as a kubelet does, so the Deployment becomes available and
  envhub's readiness wait ends as on a real cluster (no image is pulled). A push
  changes only the spec's ``ref`` here: the image stays the same.

A floor is the runtime envhub's workers build (``get_runtime``), with the same
settings, applying the same target by itself: no webhook, queue, database or
GitHub. Each sample is destroyed again, and on Kubernetes ``destroy`` waits for
the namespace to be finalized, as a pull request's close does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envhub.config import Settings
from envhub.domain.specs import EnvironmentTarget, parse_spec
from envhub.runtime import get_runtime
from envhub.runtime.local.processes import free_port

RUNTIMES = ("local", "kubernetes")


@dataclass(frozen=True)
class RuntimeSetup:
    """What one runtime's part of the benchmark changes: settings, and the project's spec."""

    name: str
    where: str  # for the report's heading
    settings: dict[str, Any]  # Settings fields, given to the server and workers as ENVHUB_* too
    spec: dict[str, Any]  # the project's spec fields (a pull request adds its ``ref``)

    def environ(self) -> dict[str, str]:
        return {f"ENVHUB_{key.upper()}": str(value) for key, value in self.settings.items()}

    def project(self) -> dict[str, Any]:
        """``create_project`` keywords for the spec: image-based fields go under ``workloads``."""
        fields = dict(self.spec)
        services = fields.pop("services", None)
        return {**fields, "workloads": {"services": services}} if services else fields


def local(repo: Path) -> RuntimeSetup:
    return RuntimeSetup(
        name="local",
        where="local runtime",
        settings={"runtime": "local"},
        spec={"repo_url": str(repo), "command": "python3 -m http.server $PORT"},
    )


def kubernetes(kubeconfig: Path) -> RuntimeSetup:
    port = free_port()  # one environment at a time, so one port for all of them
    service = {
        "name": "web",
        "image": "python:3.12-slim",
        "command": ["python3", "-m", "http.server", str(port)],
        "ports": [port],
    }
    return RuntimeSetup(
        name="kubernetes",
        where="kubernetes runtime on the test cluster (kube-apiserver v1.20.2, test kubelet)",
        settings={"runtime": "kubernetes", "kubeconfig": str(kubeconfig), "kube_ready_timeout": 120},
        spec={"services": [service]},
    )


def runtime_floor(setup: RuntimeSetup, settings: Settings, sha: str, samples: int) -> list[float]:
    """The runtime alone deploying the app at ``sha`` (call under ``override_settings(settings)``)."""
    runtime = get_runtime(settings)
    times = []
    for n in range(samples):
        target = EnvironmentTarget(
            id=900_000 + n,
            name=f"floor-{n}",
            project="app",
            team="bench",
            generation=1,
            spec=parse_spec({**setup.spec, "ref": sha}),
        )
        started = time.monotonic()
        runtime.apply(target, progress=_Quiet())
        times.append(time.monotonic() - started)
        runtime.destroy(target.id, progress=_Quiet())
    return times


class _Quiet:
    def begin(self, key: str, detail: str = "") -> None: ...
    def finish(self, key: str, detail: str = "") -> None: ...
    def skip(self, key: str, detail: str = "") -> None: ...
    def heartbeat(self) -> None: ...
