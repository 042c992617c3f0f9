"""Inspection in depth and logs over time, through the real apiserver and the test kubelet:
a crash-looping container's last exit, probes, requests and limits, its variables with secret
values redacted before any face sees them, the previous instance's output, a time range, and
the usage of a cluster without the metrics API."""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Callable
from typing import Any

import pytest
from sqlmodel import Session

from envhub.config import Settings
from envhub.domain import logs as rules
from envhub.domain.specs import EnvironmentTarget
from envhub.errors import NotReady
from envhub.jobs.environments import converge_environment
from envhub.runtime.base import ContainerInfo, Usage
from envhub.runtime.kubernetes import KubernetesRuntime, describing
from envhub.services import logs, ports
from envhub.services.environments import create_environment
from envhub.services.inspection import workload_rows
from envhub.services.projects import create_project
from tests.support.fakes import FakeQueue
from tests.support.runtime import RecordingProgress
from tests.support.waiting import wait_for
from tests.support.world import World

pytestmark = pytest.mark.kube

MakeEnv = Callable[..., EnvironmentTarget]
CRASHING = "echo booted; echo 'fatal: out of widgets' >&2; exit 3"


def _api(runtime: KubernetesRuntime, target: EnvironmentTarget) -> ContainerInfo | None:
    pods = runtime.inspect(target.id).pods
    found = [c for pod in pods for c in pod.containers if c.name == "api"]
    return found[0] if found and found[0].last_termination is not None else None


def test_a_crash_looping_container_is_described_with_its_last_exit_probes_resources_and_variables(
    runtime: KubernetesRuntime, make_env: MakeEnv
) -> None:
    api: dict[str, Any] = {
        "name": "api",
        "image": "busybox:1.36",
        "command": ["sh", "-c", CRASHING],
        "ports": [8080],
        "health": {"path": "/healthz", "initial_delay_seconds": 2, "period_seconds": 5},
        "resources": {"cpu": "50m", "memory": "64Mi", "cpu_limit": "250m", "memory_limit": "96Mi"},
        "env": {
            "MODE": "debug",
            "API_TOKEN": "tok-live-123",
            "DATABASE_URL": "postgres://app:hunter2@db:5432/app",
        },
    }
    target = dataclasses.replace(make_env(services=[api]), secrets={"STRIPE": "sk_live_abc"})
    impatient = KubernetesRuntime(runtime.api, ready_timeout=3.0)
    with contextlib.suppress(NotReady):
        impatient.apply(target, progress=RecordingProgress())

    container = wait_for(lambda: _api(runtime, target), timeout=60, what="the api's first crash")
    assert container.image == "busybox:1.36"
    assert container.image_id  # what the kubelet reported running
    assert container.restarts >= 1
    ended = container.last_termination
    assert ended is not None
    assert (ended.exit_code, ended.reason) == (3, "Error")
    assert ended.finished_at
    kinds = {probe.kind: probe for probe in container.probes}
    assert kinds["readiness"].action == "HTTP GET :8080/healthz"
    assert kinds["readiness"].timing == "after 2s, every 5s, timeout 1s, 3 failures"
    assert set(kinds) == {"readiness", "liveness"}
    assert container.requests == {"cpu": "50m", "memory": "64Mi"}
    assert container.limits == {"cpu": "250m", "memory": "96Mi"}

    # What every face is given: secret values never leave the server.
    [row] = [r for r in workload_rows(runtime.inspect(target.id).pods) if r["container"] == "api"]
    env = {variable["name"]: variable for variable in row["env"]}
    assert (env["MODE"]["value"], env["MODE"]["redacted"]) == ("debug", False)
    assert env["API_TOKEN"]["redacted"]
    assert "tok-live-123" not in str(row)
    assert env["DATABASE_URL"]["value"] == "postgres://app:••••••@db:5432/app"
    assert "hunter2" not in str(row)
    assert env["*"]["source"] == "secret"  # the project's secrets, by reference (envFrom)
    assert "sk_live_abc" not in str(row)
    assert row["last_exit"].startswith("Error (exit 3)")
    assert row["requests"] == "cpu 50m · memory 64Mi"
    assert row["limits"] == "cpu 250m · memory 96Mi"

    # The previous instance's output is the crash's; asking for one that never was is quiet.
    previous = list(runtime.logs(target.id, previous=True, tail=10))
    assert previous == ["booted", "fatal: out of widgets"]


def test_a_time_range_and_a_search_cut_the_lines_by_the_kubelets_own_times(
    kube_settings: Settings, session: Session, world: World
) -> None:
    ticker = "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done"
    project = create_project(
        session=session,
        actor=world.owner,
        team_id=world.acme,
        name="shop",
        workloads={"services": [{"name": "ticker", "image": "busybox", "command": ["sh", "-c", ticker]}]},
    )
    assert project.id is not None
    queue = FakeQueue()
    env = create_environment(
        session=session, actor=world.member, queue=queue, project_id=project.id, name="t"
    )
    assert env.id is not None
    converge_environment(*queue.jobs[-1].args)  # type: ignore[arg-type]
    runtime = ports.runtime()
    wait_for(lambda: len(list(runtime.logs(env.id, tail=None))) >= 15, what="some ticks")

    def read(**chosen: Any) -> logs.LogPage:
        return logs.environment_logs(
            session=session,
            actor=world.member,
            runtime=runtime,
            environment_id=env.id,  # type: ignore[arg-type]
            tail=1000,
            chosen=logs.LogFilter(**chosen),
        )

    stamped = read(timestamps=True)["lines"]
    times = [rules.split_stamp(line) for line in stamped]
    assert all(moment is not None for moment, _ in times)  # every line has its own time
    assert [text for _, text in times[:3]] == ["tick 0", "tick 1", "tick 2"]
    assert read(previous=True)["lines"] == []  # it never restarted

    start, end = times[4][0], times[9][0]
    assert start is not None
    assert end is not None
    expected = [text for moment, text in times if moment is not None and start <= moment <= end]
    assert len(expected) >= 6
    page = read(since=start.isoformat(), until=end.isoformat())
    assert page["lines"][: len(expected)] == expected  # the kubelet's times, not the reader's
    assert all(line.startswith("tick ") for line in page["lines"])
    assert "tick 3" not in page["lines"]
    assert page["since"] == start.strftime("%Y-%m-%dT%H:%M:%SZ")

    searched = read(search=r"^tick 1\d$", regex=True, since=start.isoformat())
    seen = [text for _, text in times if re.fullmatch(r"tick 1\d", text)]
    assert seen  # the ticks read above got as far as "tick 14"
    assert searched["lines"][: len(seen)] == seen
    assert all(re.fullmatch(r"tick 1\d", line) for line in searched["lines"])


def test_a_cluster_without_the_metrics_api_is_said_to_have_none(
    runtime: KubernetesRuntime, make_env: MakeEnv
) -> None:
    target = make_env(services=[{"name": "idle", "image": "busybox", "command": ["sleep", "600"]}])
    runtime.apply(target, progress=RecordingProgress())
    found = runtime.usage(target.id)
    assert (found.available, found.containers, found.source) == (False, (), "metrics.k8s.io")
    assert found.reason == describing.NO_METRICS_API
    assert runtime.usage(1_000_003) == Usage(available=True, source="metrics.k8s.io")  # nothing there
