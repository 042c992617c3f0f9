"""Cluster errors reach envhub's callers as envhub errors with stable codes, never as ApiException.

Transient ones (5xx, 409, 429, connection refused) are retried with exponential
backoff, then reported as retryable; refusals (401, 403, 422) are not retried.
The stopped-apiserver case is in test_outage.py.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from envhub.domain.kube import namespace_for
from envhub.domain.specs import EnvironmentTarget
from envhub.errors import ClusterForbidden, ClusterUnauthorized, ClusterUnreachable, EnvhubError
from envhub.runtime.kubernetes import KubernetesRuntime, api_client
from tests.kube.apiproxy import ApiProxy
from tests.kube.helpers import Kube
from tests.support.runtime import RecordingProgress

pytestmark = pytest.mark.kube

MakeEnv = Callable[..., EnvironmentTarget]
NAMESPACES = r"^/api/v1/namespaces\?"


def test_a_wrong_token_is_cluster_unauthorized(cluster: Any, make_env: MakeEnv) -> None:
    stranger = KubernetesRuntime(cluster.api_client(token="not-a-valid-token"))
    with pytest.raises(ClusterUnauthorized) as refused:
        stranger.managed_environments()
    assert refused.value.code == "cluster_unauthorized"
    assert not refused.value.retryable
    assert isinstance(refused.value.__cause__, ApiException)  # raised from it, not leaked
    with pytest.raises(ClusterUnauthorized):
        stranger.apply(make_env(), progress=RecordingProgress())
    with pytest.raises(ClusterUnauthorized):
        stranger.status(1)  # only retryable trouble becomes a "degraded" status


def test_an_identity_without_rights_is_cluster_forbidden(
    runtime: KubernetesRuntime, kube: Kube, make_env: MakeEnv
) -> None:
    target = make_env()
    runtime.apply(target, progress=RecordingProgress())
    token = kube.core.create_namespaced_service_account_token(
        "envhub-workload", namespace_for(target), {"spec": {"expirationSeconds": 600}}
    ).status.token
    weak = KubernetesRuntime(kube.cluster.api_client(token=token))
    with pytest.raises(ClusterForbidden) as refused:
        weak.managed_environments()
    assert refused.value.code == "cluster_forbidden"
    assert 'cannot list resource "namespaces"' in refused.value.message
    assert "RBAC" in refused.value.hint


def test_transient_errors_are_retried_with_backoff(cluster: Any, make_env: MakeEnv, tmp_path: Path) -> None:
    with ApiProxy(cluster, tmp_path) as proxy:
        runtime = KubernetesRuntime(api_client(str(proxy.kubeconfig)))
        # Two 503s, then the real answer: the caller never notices.
        proxy.fail(503, times=2, path=NAMESPACES)
        assert isinstance(runtime.managed_environments(), set)
        assert [s.status for s in proxy.requests("GET", "/api/v1/namespaces?")] == [503, 503, None]

        # A conflict while applying is retried too (another writer got there first).
        target = make_env()
        proxy.fail(409, times=1, method="PATCH", path="/resourcequotas/envhub-quota")
        runtime.apply(target, progress=RecordingProgress())
        assert [s.status for s in proxy.requests("PATCH", "/resourcequotas/")] == [409, None]

        # When it does not pass: four attempts, further and further apart, then a retryable error.
        del proxy.state.seen[:]
        proxy.fail(503, times=10, path=NAMESPACES)
        with pytest.raises(ClusterUnreachable) as unreachable:
            runtime.managed_environments()
        assert unreachable.value.retryable
        assert unreachable.value.code == "cluster_unreachable"
        attempts = proxy.requests("GET", "/api/v1/namespaces?")
        assert [s.status for s in attempts] == [503] * 4
        gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(attempts)]
        # Exponential backoff (0.2 s, 0.4 s, 0.8 s); a loaded machine only makes the gaps longer.
        assert all(gap >= minimum * 0.9 for gap, minimum in zip(gaps, (0.2, 0.4, 0.8), strict=True)), gaps


def test_no_api_exception_escapes_the_runtime(cluster: Any, make_env: MakeEnv, tmp_path: Path) -> None:
    """Every port method, against a cluster that refuses everything, raises envhub errors."""
    with ApiProxy(cluster, tmp_path) as proxy:
        runtime = KubernetesRuntime(api_client(str(proxy.kubeconfig)))
        for method in ("GET", "PATCH", "DELETE", "POST"):
            proxy.fail(403, times=1000, method=method, path="/")  # not retried: keeps this test quick
        target = make_env()
        calls: list[Callable[[], object]] = [
            lambda: runtime.apply(target, progress=RecordingProgress()),
            lambda: runtime.status(target.id),
            lambda: runtime.inspect(target.id),
            lambda: runtime.managed_environments(),
            lambda: runtime.destroy(target.id, progress=RecordingProgress()),
            lambda: runtime.stop(target.id),
            lambda: runtime.logs(target.id),
            lambda: runtime.exec(target.id),
        ]
        for call in calls:
            with pytest.raises(EnvhubError) as failed:
                call()
            assert failed.value.code == "cluster_forbidden"
            assert isinstance(failed.value.__cause__, ApiException)
        # Retryable trouble does not raise from status(): it is a degraded status with its condition.
        del proxy.state.faults[:]
        proxy.fail(500, times=1000, path="/")
        status = runtime.status(target.id)
        assert status.details == {"condition": "cluster_unreachable"}
        assert status.message.startswith("finding the environment's namespace: the cluster answered 500")
