"""Every request envhub makes is one it needs, counted the way bench/provision.py counts them.

The runtime under test logs its requests (``ENVHUB_KUBE_REQUEST_LOG``). A first
apply is each object applied once, the record of what was applied written
once, one watch for the quota to be counted and one for the Deployments: no
discovery for envhub's own kinds, nothing listed back. A re-run of an
unchanged, healthy environment is its applies and nothing else. Pruning
deletes what dropped out by name, from the record on the Namespace, without
listing; an environment from before the record is listed once.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bench.kube_requests import read_requests
from envhub.domain.kube import APPLIED_ANNOTATION, namespace_for, render_environment
from envhub.domain.specs import EnvironmentTarget, parse_spec
from envhub.runtime.kubernetes import KubernetesRuntime, api_client
from envhub.runtime.kubernetes.client import REQUEST_LOG_VARIABLE
from envhub.runtime.kubernetes.waiting import EXPLAIN_AFTER, EXPLAIN_EVERY
from tests.kube.helpers import Kube, web_service
from tests.support.runtime import RecordingProgress

pytestmark = pytest.mark.kube

MakeEnv = Callable[..., EnvironmentTarget]
WORKER = {"name": "worker", "image": "busybox", "command": ["sleep", "3600"], "ports": [7000]}


class Counted:
    """A runtime whose requests are logged, and the log read per phase."""

    def __init__(self, cluster: Any, log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.log = log
        monkeypatch.setenv(REQUEST_LOG_VARIABLE, str(log))
        self.runtime = KubernetesRuntime(api_client(str(cluster.kubeconfig)), ready_timeout=30.0)

    def take(self) -> Counter[tuple[str, str]]:
        """(verb, resource) of every request since the last call."""
        requests = read_requests(self.log)
        self.log.unlink(missing_ok=True)
        return Counter(request.shape()[:2] for request in requests)


@pytest.fixture
def counted(cluster: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Counted:
    return Counted(cluster, tmp_path / "requests.jsonl", monkeypatch)


def applies(target: EnvironmentTarget) -> Counter[tuple[str, str]]:
    """One apply per rendered object."""
    plural = {
        "Namespace": "namespaces",
        "ResourceQuota": "resourcequotas",
        "LimitRange": "limitranges",
        "NetworkPolicy": "networkpolicies",
        "ServiceAccount": "serviceaccounts",
        "Role": "roles",
        "RoleBinding": "rolebindings",
        "Service": "services",
        "Deployment": "deployments",
    }
    return Counter(("apply", plural[obj["kind"]]) for obj in render_environment(target))


README = Path(__file__).resolve().parents[2] / "README.md"


def readme_says(first: int, again: int) -> str:
    """The README's sentence about these figures, as it must read."""
    return (
        f"a first apply of an environment with two services makes {first} API requests, "
        f"re-applying it unchanged {again}"
    )


def test_first_apply_re_apply_and_prune_make_only_the_requests_they_need(
    counted: Counted, kube: Kube, make_env: MakeEnv, record_property: Callable[[str, object], None]
) -> None:
    web = web_service()
    target = make_env(services=[web, WORKER])
    started = time.monotonic()
    counted.runtime.apply(target, progress=RecordingProgress())
    took = time.monotonic() - started
    first = counted.take()
    # Pods are listed only to explain a Deployment that stays unavailable, at most every few seconds.
    explained = first.pop(("list", "pods"), 0)
    assert explained <= max(0, math.ceil((took - EXPLAIN_AFTER) / EXPLAIN_EVERY) + 1)
    expected = applies(target) + Counter(
        {
            ("apply", "namespaces"): 1,  # the record of what was applied
            ("watch", "resourcequotas"): 1,  # until the quota controller counted the new quota
            ("watch", "deployments"): 1,  # until both are available, from the events themselves
        }
    )
    assert first == expected

    # Nothing changed and everything is available: the applies say so, nothing else is asked.
    counted.runtime.apply(target, progress=RecordingProgress())
    again = counted.take()
    assert again == applies(target)

    # The figures the README quotes are these, printed at the end of `make test`.
    totals = sum(first.values()), sum(again.values())
    record_property("figure: Kubernetes API requests, first apply of a two-service environment", totals[0])
    record_property("figure: Kubernetes API requests, unchanged re-apply", totals[1])
    assert readme_says(*totals) in " ".join(README.read_text().split()), (
        f"README.md should say: {readme_says(*totals)}"
    )

    # The worker drops out: deleted by name from the record, the record rewritten; nothing listed.
    smaller = dataclasses.replace(target, generation=2, spec=parse_spec({"services": [web]}))
    counted.runtime.apply(smaller, progress=RecordingProgress())
    assert counted.take() == applies(smaller) + Counter(
        {("delete", "deployments"): 1, ("delete", "services"): 1, ("apply", "namespaces"): 1}
    )
    ns = namespace_for(target)
    assert kube.get(f"/apis/apps/v1/namespaces/{ns}/deployments/worker") is None
    assert kube.get(f"/api/v1/namespaces/{ns}/services/worker") is None
    namespace = kube.get(f"/api/v1/namespaces/{ns}")
    assert namespace is not None
    record = namespace["metadata"]["annotations"][APPLIED_ANNOTATION]
    assert "apps/v1/Deployment/web" in record.split(",")
    assert "worker" not in record


def test_an_environment_without_a_record_is_listed_once_then_pruned_from_the_record(
    counted: Counted, kube: Kube, make_env: MakeEnv
) -> None:
    web = web_service()
    target = make_env(services=[web, WORKER])
    counted.runtime.apply(target, progress=RecordingProgress())
    ns = namespace_for(target)
    # As an envhub from before the record left it.
    kube.core.patch_namespace(ns, {"metadata": {"annotations": {APPLIED_ANNOTATION: None}}})
    counted.take()

    smaller = dataclasses.replace(target, generation=2, spec=parse_spec({"services": [web]}))
    counted.runtime.apply(smaller, progress=RecordingProgress())
    requests = counted.take()
    assert {key: n for key, n in requests.items() if key[0] == "list"} == {
        ("list", "deployments"): 1,
        ("list", "services"): 1,
        ("list", "networkpolicies"): 1,
    }
    assert requests[("delete", "deployments")] == requests[("delete", "services")] == 1
    assert kube.get(f"/apis/apps/v1/namespaces/{ns}/deployments/worker") is None

    # From now on the record serves.
    counted.runtime.apply(smaller, progress=RecordingProgress())
    assert counted.take() == applies(smaller)


def test_an_unserved_kind_is_discovered_once_and_refused_before_anything_is_applied(
    counted: Counted, kube: Kube, make_env: MakeEnv
) -> None:
    cron = (
        "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: nightly}\n"
        "spec: {schedule: '0 3 * * *', jobTemplate: {spec: {template: {spec: {restartPolicy: Never,"
        " containers: [{name: job, image: busybox}]}}}}}\n"
    )
    target = make_env(manifests=cron)
    for _ in range(2):
        with pytest.raises(Exception, match="does not serve CronJob in batch/v1"):
            counted.runtime.apply(target, progress=RecordingProgress())
    # Rendering asked, apply and the second attempt remembered the answer.
    assert counted.take() == Counter({("discover", "/apis/batch/v1"): 1})
    assert kube.live_namespaces(target.id) == []
