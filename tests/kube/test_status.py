"""Status and readiness: what is ready, what is still waiting (and why), and the status watch.

The test kubelet reports ``ImagePullBackOff`` for images containing
``does-not-exist`` and crash loops for commands that exit non-zero, as a real
kubelet would; pods bound to a node that does not exist stay Pending.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from envhub.config import Settings, override_settings
from envhub.domain.kube import namespace_for
from envhub.domain.kube.deployments import MIN_READY_SECONDS
from envhub.domain.phases import Phase
from envhub.domain.specs import EnvironmentTarget
from envhub.errors import NotReady
from envhub.jobs.environments import converge_environment
from envhub.models import Environment, JobRun, JobStatus
from envhub.runtime.base import REMOVED, RuntimeState, RuntimeStatus
from envhub.runtime.kubernetes import KubernetesRuntime, api_client
from envhub.runtime.kubernetes.watching import DeploymentWatcher
from envhub.services import ports
from envhub.services.environments import create_environment
from envhub.services.inspection import inspect_environment
from envhub.services.projects import create_project
from tests.conftest import build_settings
from tests.kube.apiproxy import ApiProxy
from tests.kube.helpers import Kube, web_service
from tests.support.db import fetch, fetch_all
from tests.support.fakes import FakeQueue
from tests.support.runtime import RecordingProgress
from tests.support.waiting import wait_for
from tests.support.world import World

pytestmark = pytest.mark.kube

MakeEnv = Callable[..., EnvironmentTarget]
UNPULLABLE = "registry.example.com/does-not-exist:1"


@pytest.fixture
def impatient(runtime: KubernetesRuntime) -> KubernetesRuntime:
    """The same adapter, giving up on readiness after 3 s (NotReady) instead of 30."""
    return KubernetesRuntime(runtime.api, ready_timeout=3.0)


def test_ready_when_every_workload_is_available(runtime: KubernetesRuntime, make_env: MakeEnv) -> None:
    target = make_env(
        services=[web_service(), {"name": "worker", "image": "busybox", "command": ["sleep", "600"]}]
    )
    runtime.apply(target, progress=RecordingProgress())
    status = runtime.status(target.id)
    assert status.state is RuntimeState.ready
    assert status.message == "all workloads available (web, worker)"
    assert status.details == {"namespace": namespace_for(target)}
    assert runtime.status(1_000_000).state is RuntimeState.absent  # never raises for a missing one


def test_an_image_that_cannot_be_pulled_is_named_in_the_status_and_the_inspection(
    runtime: KubernetesRuntime, impatient: KubernetesRuntime, make_env: MakeEnv
) -> None:
    target = make_env(services=[web_service(image=UNPULLABLE)])
    with pytest.raises(NotReady) as waiting:
        impatient.apply(target, progress=RecordingProgress())
    assert waiting.value.retryable
    assert "/web: cannot pull image" in waiting.value.message

    status = runtime.status(target.id)
    assert status.state is RuntimeState.starting
    assert "/web: cannot pull image" in status.message

    seen = runtime.inspect(target.id)
    assert seen.location == namespace_for(target)
    [pod] = seen.pods
    assert pod.phase == "Pending"
    [container] = pod.containers
    assert (container.name, container.state, container.ready, container.reason) == (
        "web",
        "waiting",
        False,
        "ImagePullBackOff",
    )
    reasons = {(e.object.split("/")[0], e.reason) for e in seen.events}
    assert {("Deployment", "ScalingReplicaSet"), ("ReplicaSet", "SuccessfulCreate")} <= reasons


def test_a_crash_loop_is_named_with_its_exit_code(
    runtime: KubernetesRuntime, impatient: KubernetesRuntime, make_env: MakeEnv
) -> None:
    target = make_env(
        services=[{"name": "api", "image": "busybox", "command": ["sh", "-c", "echo boom; exit 1"]}]
    )
    # Without a readiness probe a container counts as available the moment it
    # runs, so apply may see it available before its first crash: both are fine
    # here. What matters is what the status says once it crashes.
    with contextlib.suppress(NotReady):
        impatient.apply(target, progress=RecordingProgress())

    def crash_looping() -> RuntimeStatus | None:
        status = runtime.status(target.id)
        return status if "/api: crash loop (last exit code 1; back-off" in status.message else None

    status = wait_for(crash_looping, timeout=60, what="a crash loop in the status")
    assert status.state is RuntimeState.starting

    def restarted() -> Any:
        [pod] = runtime.inspect(target.id).pods
        return pod if pod.containers[0].restarts >= 1 else None

    pod = wait_for(restarted, timeout=60, what="a restart in the inspection")
    assert pod.containers[0].name == "api"
    assert not pod.containers[0].ready or pod.containers[0].state == "running"
    assert "boom" in list(runtime.logs(target.id, tail=5))


def test_a_service_that_dies_soon_after_starting_is_never_reported_available(
    runtime: KubernetesRuntime, make_env: MakeEnv
) -> None:
    # Without anything to probe, available means "stayed up for minReadySeconds",
    # not "started": this one runs for a second, then exits, again and again.
    patient = KubernetesRuntime(runtime.api, ready_timeout=MIN_READY_SECONDS + 4.0)
    target = make_env(
        services=[{"name": "flaky", "image": "busybox", "command": ["sh", "-c", "sleep 1; exit 3"]}]
    )
    with pytest.raises(NotReady) as waiting:
        patient.apply(target, progress=RecordingProgress())
    assert "/flaky: " in waiting.value.message
    assert "exit" in waiting.value.message  # "exited with code 3" or "crash loop (last exit code 3; ...)"
    assert runtime.status(target.id).state is RuntimeState.starting


def test_a_pod_that_is_never_scheduled_reads_pending(
    runtime: KubernetesRuntime, impatient: KubernetesRuntime, kube: Kube, make_env: MakeEnv
) -> None:
    stranded = (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: stranded}\n"
        "spec:\n  selector: {matchLabels: {app: stranded}}\n"
        "  template:\n    metadata: {labels: {app: stranded}}\n"
        "    spec: {nodeName: no-such-node,"
        " containers: [{name: c, image: busybox, command: [sleep, '60']}]}\n"
    )
    target = make_env(manifests=stranded)
    with pytest.raises(NotReady) as waiting:
        impatient.apply(target, progress=RecordingProgress())
    assert waiting.value.message.startswith("not available yet: stranded-")
    assert waiting.value.message.endswith(": pending")
    [pod] = runtime.inspect(target.id).pods
    assert pod.phase == "Pending"
    assert [(c.name, c.state, c.reason) for c in pod.containers] == [("c", "waiting", "not started")]
    # No kubelet will ever finish these pods' deletion: remove them now so the namespace can go.
    ns = namespace_for(target)
    kube.core.delete_collection_namespaced_pod(ns, grace_period_seconds=0)


def test_the_job_says_what_is_still_waiting_and_retries(
    kube_settings: Settings, session: Session, world: World, db: Engine
) -> None:
    project = create_project(
        session=session,
        actor=world.owner,
        team_id=world.acme,
        name="shop",
        workloads={"services": [web_service(image=UNPULLABLE)]},
    )
    assert project.id is not None
    queue = FakeQueue()
    env = create_environment(
        session=session, actor=world.member, queue=queue, project_id=project.id, name="pr-7"
    )
    assert env.id is not None
    with override_settings(build_settings(**{**kube_settings.model_dump(), "kube_ready_timeout": 3.0})):
        ports.reset()
        outcome = converge_environment(*queue.jobs[-1].args)  # type: ignore[arg-type]
    ports.reset()
    assert outcome.startswith("retrying: not available yet: ")
    waiting = fetch(db, Environment, env.id)
    assert waiting is not None
    assert waiting.phase is Phase.provisioning
    assert "/web: cannot pull image" in waiting.message
    assert "retrying in 2s (attempt 1)" in waiting.message
    [run] = fetch_all(db, JobRun)
    assert (run.status, run.error_code) == (JobStatus.queued, "not_ready")
    assert run.retry_at is not None

    # What the dashboard's inspection panel shows for it, through the service.
    seen = inspect_environment(
        session=session, actor=world.member, runtime=ports.runtime(), environment_id=env.id
    )
    assert [c.reason for p in seen.pods for c in p.containers] == ["ImagePullBackOff"]


# -- the status watch ---------------------------------------------------------------------


class Recorder:
    """A StatusHandler that remembers every report."""

    def __init__(self) -> None:
        self.reports: list[tuple[int, RuntimeStatus]] = []
        self.lock = threading.Lock()

    def __call__(self, environment_id: int, status: RuntimeStatus) -> None:
        with self.lock:
            self.reports.append((environment_id, status))

    def states(self, environment_id: int) -> list[RuntimeState]:
        with self.lock:
            return [s.state for e, s in self.reports if e == environment_id]

    def saw(self, environment_id: int, state: RuntimeState) -> bool:
        return state in self.states(environment_id)


class CountingWatcher(DeploymentWatcher):
    """The production watcher, counting its watch windows and relists."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.windows = 0
        self.relists = 0

    def relist(self) -> None:
        self.relists += 1
        super().relist()

    def step(self) -> None:
        super().step()
        self.windows += 1


@pytest.fixture
def run_in_thread() -> Iterator[Callable[[Callable[[threading.Event], None]], threading.Event]]:
    stops: list[tuple[threading.Event, threading.Thread]] = []

    def start(target: Callable[[threading.Event], None]) -> threading.Event:
        stop = threading.Event()
        thread = threading.Thread(target=target, args=(stop,), daemon=True)
        thread.start()
        stops.append((stop, thread))
        return stop

    yield start
    for stop, thread in stops:
        stop.set()
        thread.join(timeout=2)  # a 60 s watch window ends later; the thread is a daemon


def test_the_runtime_watch_reports_changes(
    runtime: KubernetesRuntime, kube: Kube, make_env: MakeEnv, run_in_thread: Any
) -> None:
    recorder = Recorder()
    run_in_thread(lambda stop: runtime.watch(recorder, stop))
    target = make_env(services=[web_service()])
    runtime.apply(target, progress=RecordingProgress())
    wait_for(lambda: recorder.saw(target.id, RuntimeState.ready), timeout=60, what="ready reported")
    kube.apps.delete_namespaced_deployment("web", namespace_for(target))
    wait_for(lambda: recorder.saw(target.id, RuntimeState.absent), timeout=60, what="absent reported")


def test_destroy_leaves_finalization_to_the_namespace_watch(
    runtime: KubernetesRuntime, kube: Kube, make_env: MakeEnv, run_in_thread: Any
) -> None:
    recorder = Recorder()
    run_in_thread(lambda stop: runtime.watch(recorder, stop))
    target = make_env(services=[web_service()])
    runtime.apply(target, progress=RecordingProgress())
    namespace = namespace_for(target)

    def removed() -> list[RuntimeStatus]:
        with recorder.lock:
            return [s for e, s in recorder.reports if e == target.id and s.details.get(REMOVED)]

    with kube.held(namespace) as release:
        progress = RecordingProgress()
        assert runtime.destroy(target.id, progress=progress) is False  # nothing waits for the finalizers
        assert progress.events == [
            ("begin", "stop", namespace),
            ("finish", "stop", f"namespace {namespace} is terminating"),
            ("begin", "cleanup", f"waiting for {namespace} to be finalized"),
        ]
        again = RecordingProgress()
        assert runtime.destroy(target.id, progress=again) is False  # still terminating: no second delete
        assert again.events == [("begin", "cleanup", f"waiting for {namespace} to be finalized")]
        assert runtime.managed_environments().isdisjoint({target.id})  # a terminating one is no orphan
        assert removed() == []
        release()
        [status] = wait_for(removed, timeout=60, what="the end of the removal reported")
    assert status.state is RuntimeState.absent
    assert status.details == {REMOVED: "namespace", "namespace": namespace}
    assert kube.namespace_gone(namespace)
    last = RecordingProgress()
    assert runtime.destroy(target.id, progress=last) is True
    assert last.events == [("skip", "stop", "no namespace"), ("finish", "cleanup", "no namespace left")]


def test_the_watch_resumes_after_its_window_ends(
    runtime: KubernetesRuntime, kube: Kube, make_env: MakeEnv, run_in_thread: Any
) -> None:
    recorder = Recorder()
    watcher = CountingWatcher(runtime.api, recorder, window=1)
    run_in_thread(watcher.run)
    target = make_env(services=[web_service()])
    runtime.apply(target, progress=RecordingProgress())
    wait_for(lambda: recorder.saw(target.id, RuntimeState.ready), timeout=60, what="ready reported")

    later = watcher.windows + 4
    wait_for(lambda: watcher.windows >= later, timeout=60, what="several 1 s watch windows to end")
    seen = len(recorder.states(target.id))
    kube.apps.patch_namespaced_deployment_scale("web", namespace_for(target), {"spec": {"replicas": 3}})
    wait_for(
        lambda: RuntimeState.starting in recorder.states(target.id)[seen:], timeout=60, what="scale-up seen"
    )
    wait_for(lambda: recorder.states(target.id)[-1:] == [RuntimeState.ready], timeout=60, what="ready again")
    kube.apps.delete_namespaced_deployment("web", namespace_for(target))
    wait_for(lambda: recorder.saw(target.id, RuntimeState.absent), timeout=60, what="deletion seen")
    assert watcher.relists == 1  # windows ended several times; it resumed from its resourceVersion each time


def test_an_expired_resource_version_makes_the_watch_relist(
    cluster: Any,
    runtime: KubernetesRuntime,
    kube: Kube,
    make_env: MakeEnv,
    run_in_thread: Any,
    tmp_path: Path,
) -> None:
    with ApiProxy(cluster, tmp_path) as proxy:
        recorder = Recorder()
        watcher = CountingWatcher(api_client(str(proxy.kubeconfig)), recorder, window=1)
        run_in_thread(watcher.run)
        target = make_env(services=[web_service()])
        runtime.apply(target, progress=RecordingProgress())
        wait_for(lambda: recorder.saw(target.id, RuntimeState.ready), timeout=60, what="ready reported")
        assert watcher.relists == 1

        proxy.expire_next_watch("/apis/apps/v1/deployments?")
        wait_for(lambda: watcher.relists == 2, timeout=60, what="a relist after 410 Gone")
        assert [s.status for s in proxy.requests("GET", "/apis/apps/v1/deployments?")].count(410) == 1
        # It carries on watching from the fresh list.
        kube.apps.delete_namespaced_deployment("web", namespace_for(target))
        wait_for(lambda: recorder.saw(target.id, RuntimeState.absent), timeout=60, what="deletion seen")
