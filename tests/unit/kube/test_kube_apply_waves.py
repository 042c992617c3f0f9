"""Objects are applied wave after wave: the kinds that need nothing of each other together, then
what needs them (role bindings, account tokens), the pod-making kinds together, other kinds one by one."""

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
    {**obj("v1", "Secret", "account-token"), "type": "kubernetes.io/service-account-token"},
    obj("v1", "Secret", "secret"),
    obj("v1", "ConfigMap", "config-a"),
    obj("v1", "ConfigMap", "config-b"),
    obj("rbac.authorization.k8s.io/v1", "Role", "reader"),
    obj("rbac.authorization.k8s.io/v1", "RoleBinding", "reader-binding"),
    obj("v1", "Service", "service"),
    obj("apps/v1", "Deployment", "web"),
    obj("apps/v1", "StatefulSet", "db"),
    obj("autoscaling/v2", "HorizontalPodAutoscaler", "web-scaler"),
    obj("batch/v1", "Job", "migrate"),
    obj("example.com/v1", "Deployment", "custom"),
]


def test_each_wave_goes_at_once_after_what_it_needs() -> None:
    apply = Recorder()
    stored = apply_in_waves(apply, CHART)

    assert [s.object["metadata"]["name"] for s in stored] == [o["metadata"]["name"] for o in CHART]
    # Kinds that need nothing of each other: at once.
    for a, b in [("secret", "config-a"), ("config-a", "config-b"), ("config-b", "reader")]:
        assert apply.overlap(a, b), (a, b)
    # A token Secret after its account, a RoleBinding after its Role: each ends a wave.
    for first, then in [
        ("account", "account-token"),
        ("account-token", "secret"),
        ("reader", "reader-binding"),
    ]:
        assert apply.before(first, then), (first, then)
    assert apply.before("reader-binding", "service")
    pods = ["web", "db", "web-scaler", "migrate"]
    for name in pods:
        assert apply.before("service", name)  # after everything their pods use
        assert apply.before(name, "custom")  # a custom resource's own wave, even named Deployment
    assert all(apply.overlap(a, b) for a in pods for b in pods if a != b)


def test_a_role_binding_waits_for_its_role() -> None:
    apply = Recorder()
    role = obj("rbac.authorization.k8s.io/v1", "Role", "role")
    binding = obj("rbac.authorization.k8s.io/v1", "RoleBinding", "binding")
    apply_in_waves(apply, [obj("v1", "ConfigMap", "config"), role, binding, obj("v1", "Service", "svc")])
    assert apply.overlap("config", "role")
    assert apply.before("role", "binding")
    assert apply.before("binding", "svc")


def test_a_refusal_comes_after_the_rest_of_its_wave_and_stops_the_next() -> None:
    apply = Recorder(fail="db")
    with pytest.raises(RuntimeError, match="db refused"):
        apply_in_waves(apply, CHART)
    assert {"web", "web-scaler", "migrate"} <= apply.spans.keys()
    assert "custom" not in apply.spans
