"""Rollouts are watched: an apply is done when every workload it touched has rolled out.

Deployments, StatefulSets and DaemonSets roll out, Jobs complete (the test
kubelet runs their pods as local processes). A release with a deadline
(deployment environments) fails with ``rollout_failed`` naming each workload
and why when the deadline passes; a Job that fails fails it at once.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bench.kube_requests import read_requests
from envhub.domain.kube import namespace_for
from envhub.domain.specs import EnvironmentTarget
from envhub.errors import RolloutFailed
from envhub.runtime.base import RuntimeState
from envhub.runtime.kubernetes import KubernetesRuntime, api_client
from envhub.runtime.kubernetes.client import REQUEST_LOG_VARIABLE
from tests.kube.helpers import Kube
from tests.support.runtime import RecordingProgress

pytestmark = pytest.mark.kube

MakeEnv = Callable[..., EnvironmentTarget]


def deployment(name: str, command: str = "sleep 3600") -> str:
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers: [{{name: {name}, image: busybox, command: [sh, -c, "{command}"]}}]
"""


def statefulset(name: str, command: str = "sleep 3600", replicas: int = 1) -> str:
    return f"""\
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: {name}}}
spec:
  serviceName: {name}
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers: [{{name: {name}, image: postgres:16, command: [sh, -c, "{command}"]}}]
"""


def daemonset(name: str, command: str = "sleep 3600") -> str:
    return f"""\
apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: {name}}}
spec:
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers: [{{name: {name}, image: busybox, command: [sh, -c, "{command}"]}}]
"""


def job(name: str, command: str) -> str:
    return f"""\
apiVersion: batch/v1
kind: Job
metadata: {{name: {name}}}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers: [{{name: {name}, image: busybox, command: [sh, -c, "{command}"]}}]
"""


def manifests(*documents: str) -> str:
    return "---\n".join(documents)


def with_deadline(target: EnvironmentTarget, seconds: float) -> EnvironmentTarget:
    return dataclasses.replace(target, rollout_deadline=seconds)


def finished(progress: RecordingProgress, key: str) -> str:
    return next(detail for event, step, detail in progress.events if (event, step) == ("finish", key))


def test_a_release_is_ready_when_its_deployment_statefulset_and_job_have_rolled_out(
    runtime: KubernetesRuntime, kube: Kube, make_env: MakeEnv
) -> None:
    target = with_deadline(
        make_env(
            manifests=manifests(
                deployment("web"), statefulset("db"), job("migrate", "echo migrated; sleep 1")
            )
        ),
        60,
    )
    progress = RecordingProgress()
    status = runtime.apply(target, progress=progress)

    assert status.state is RuntimeState.ready
    expected = "Deployment/web, StatefulSet/db, Job/migrate"
    assert finished(progress, "health") == f"3 workloads rolled out: {expected}"
    assert status.details["workloads"] == expected
    ns = namespace_for(target)
    migrate = kube.get(f"/apis/batch/v1/namespaces/{ns}/jobs/migrate")
    assert migrate is not None
    assert migrate["status"].get("succeeded") == 1  # it ran to the end before the apply said ready
    db = kube.get(f"/apis/apps/v1/namespaces/{ns}/statefulsets/db")
    assert db is not None
    assert db["status"].get("readyReplicas") == 1

    # A re-run finds everything rolled out (the Job complete) in the apply responses.
    again = RecordingProgress()
    runtime.apply(target, progress=again)
    assert finished(again, "health") == f"3 workloads rolled out: {expected}"


def test_a_daemonset_rolls_out_on_the_node(runtime: KubernetesRuntime, kube: Kube, make_env: MakeEnv) -> None:
    target = with_deadline(make_env(manifests=daemonset("agent")), 60)
    progress = RecordingProgress()
    status = runtime.apply(target, progress=progress)
    assert finished(progress, "health") == "1 workload rolled out: DaemonSet/agent"
    assert status.details["workloads"] == "DaemonSet/agent"
    agent = kube.get(f"/apis/apps/v1/namespaces/{namespace_for(target)}/daemonsets/agent")
    assert agent is not None
    assert agent["status"]["desiredNumberScheduled"] == agent["status"]["numberAvailable"] == 1


def test_a_failed_job_fails_the_release_at_once_with_its_reason(
    runtime: KubernetesRuntime, make_env: MakeEnv
) -> None:
    target = with_deadline(
        make_env(manifests=manifests(deployment("web"), job("migrate", "echo no database >&2; exit 1"))), 120
    )
    started = time.monotonic()
    with pytest.raises(RolloutFailed) as failed:
        runtime.apply(target, progress=RecordingProgress())
    assert time.monotonic() - started < 60, "a failed Job does not wait for the deadline"

    error = failed.value
    assert error.code == "rollout_failed"
    assert not error.retryable
    assert error.message.startswith("a Job failed: Job/migrate: BackoffLimitExceeded")
    [migrate] = error.details["workloads"]
    assert migrate["workload"] == "Job/migrate"
    assert migrate["reason"] == "BackoffLimitExceeded"
    assert "backoff limit" in migrate["message"]
    assert "/migrate: exited with code 1" in migrate["message"]  # what its pod did


def test_a_crashing_statefulset_fails_at_the_deadline_naming_it_and_the_crash(
    runtime: KubernetesRuntime, make_env: MakeEnv
) -> None:
    target = with_deadline(
        make_env(manifests=manifests(deployment("web"), statefulset("db", "echo bad config; exit 3"))), 8
    )
    beating = KubernetesRuntime(runtime.api, heartbeat_interval=1.0)
    progress = RecordingProgress()
    started = time.monotonic()
    with pytest.raises(RolloutFailed) as failed:
        beating.apply(target, progress=progress)
    took = time.monotonic() - started
    # The job stays alive while the watches wait: about one heartbeat a second.
    assert progress.heartbeats >= 6

    error = failed.value
    assert 8 <= took < 30
    # At the deadline the kubelet is backing off the next start (a crash loop)
    # or has just started it again (restarted): either way the crash is named.
    [blocker] = error.details["workloads"]
    assert blocker["workload"] == "StatefulSet/db"
    assert (blocker["reason"], blocker["message"][: len("db-0/db: crash loop")]) in {
        ("CrashLoopBackOff", "db-0/db: crash loop"),
        ("Restarting", "db-0/db: restarted "),
    }
    assert "last exit code 3" in blocker["message"]
    assert error.message.startswith(f"not rolled out within 8s: StatefulSet/db: {blocker['reason']}")


def test_without_a_deadline_a_slow_rollout_stays_not_ready_and_retryable(
    runtime: KubernetesRuntime, make_env: MakeEnv
) -> None:
    # Development environments keep the runtime's readiness timeout and its retries.
    impatient = KubernetesRuntime(runtime.api, ready_timeout=4.0)
    target = make_env(manifests=statefulset("db", "exit 3"))
    with pytest.raises(Exception) as waiting:
        impatient.apply(target, progress=RecordingProgress())
    assert getattr(waiting.value, "code", None) == "not_ready"
    assert "db-0/db: " in str(waiting.value)


def test_only_the_kinds_still_rolling_out_are_watched(
    cluster: Any, make_env: MakeEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "requests.jsonl"
    monkeypatch.setenv(REQUEST_LOG_VARIABLE, str(log))
    counted = KubernetesRuntime(api_client(str(cluster.kubeconfig)), ready_timeout=60.0)
    target = make_env(manifests=manifests(statefulset("db"), job("migrate", "sleep 1")))
    counted.apply(target, progress=RecordingProgress())
    watches = Counter(r.shape()[1] for r in read_requests(log) if r.shape()[0] == "watch")
    assert watches == Counter({"resourcequotas": 1, "statefulsets": 1, "jobs": 1})

    log.unlink()
    counted.apply(target, progress=RecordingProgress())
    assert not [r for r in read_requests(log) if r.shape()[0] in ("watch", "list")]
