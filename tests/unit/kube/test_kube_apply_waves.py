"""Objects are applied wave after wave: one kind at a time, except the pod-making kinds together."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from envhub.runtime.kubernetes.discovery import Stored
from envhub.runtime.kubernetes.runtime import apply_in_waves


def obj(api_version: str, kind: str, name: str) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": name}}


class Recorder:
    """An apply that takes a moment and notes when each object started and ended."""

    def __init__(self, fail: str | None = None) -> None:
        self.fail = fail
        self.spans: dict[str, tuple[float, float]] = {}
        self.lock = threading.Lock()

    def __call__(self, item: dict[str, Any]) -> Stored:
        name = item["metadata"]["name"]
        started = time.monotonic()
        time.sleep(0.05)
        with self.lock:
            self.spans[name] = (started, time.monotonic())
        if name == self.fail:
            raise RuntimeError(f"{name} refused")
        return Stored(object=item, created=True)

    def overlap(self, a: str, b: str) -> bool:
        (a0, a1), (b0, b1) = self.spans[a], self.spans[b]
        return a0 < b1 and b0 < a1

    def before(self, a: str, b: str) -> bool:
        return self.spans[a][1] <= self.spans[b][0]


CHART = [
    obj("v1", "ServiceAccount", "account"),
    obj("v1", "Secret", "secret"),
    obj("v1", "ConfigMap", "config-a"),
    obj("v1", "ConfigMap", "config-b"),
    obj("v1", "Service", "service"),
    obj("apps/v1", "Deployment", "web"),
    obj("apps/v1", "StatefulSet", "db"),
    obj("autoscaling/v2", "HorizontalPodAutoscaler", "web-scaler"),
    obj("batch/v1", "Job", "migrate"),
    obj("example.com/v1", "Deployment", "custom"),
]


def test_the_pod_making_kinds_go_together_after_what_their_pods_use() -> None:
    apply = Recorder()
    stored = apply_in_waves(apply, CHART)

    assert [s.object["metadata"]["name"] for s in stored] == [o["metadata"]["name"] for o in CHART]
    assert apply.overlap("config-a", "config-b")  # one kind: at once
    for first, then in [("account", "secret"), ("secret", "config-a"), ("config-b", "service")]:
        assert apply.before(first, then), (first, then)
    pods = ["web", "db", "web-scaler", "migrate"]
    for name in pods:
        assert apply.before("service", name)
        assert apply.before(name, "custom")  # a custom resource's own wave, even named Deployment
    assert all(apply.overlap(a, b) for a in pods for b in pods if a != b)


def test_a_refusal_comes_after_the_rest_of_its_wave_and_stops_the_next() -> None:
    apply = Recorder(fail="db")
    with pytest.raises(RuntimeError, match="db refused"):
        apply_in_waves(apply, CHART)
    assert {"web", "web-scaler", "migrate"} <= apply.spans.keys()
    assert "custom" not in apply.spans
