"""One real Kubernetes control plane (tests/cluster) for every test in tests/kube.

The cluster starts once per session (~5 s): namespaces are cheap, cluster starts
and namespace deletions (5-10 s each) are not. Every test gets environment ids
of its own and its namespaces are deleted, without waiting, when it ends, so a
worker's reconciler in a later test never finds them as live orphans.

Tests that need the database, Redis or workers combine these fixtures with the
ones in tests/conftest.py (``settings``, ``session``, ``world``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from envhub.config import Settings, override_settings
from envhub.domain.kube import namespace_for
from envhub.domain.specs import EnvironmentTarget
from envhub.runtime.kubernetes import KubernetesRuntime, api_client
from envhub.services import ports
from tests.conftest import build_settings
from tests.kube.helpers import CLUSTER_DIR, Kube, KubeWorkers, load_cluster_module
from tests.support.runtime import make_target

cluster_module = load_cluster_module()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "kube: runs against the real test Kubernetes control plane (tests/cluster)"
    )


@pytest.fixture(scope="session")
def cluster() -> Iterator[Any]:
    try:
        cluster_module.bin_dir()
    except cluster_module.BinariesMissing as exc:
        pytest.skip(f"{exc} (see {CLUSTER_DIR / 'README.md'})")
    with cluster_module.TestCluster() as started:
        yield started


@pytest.fixture(scope="session")
def kube(cluster: Any) -> Kube:
    """Admin access to the cluster, for reading back what envhub did (and doing things behind its back)."""
    return Kube(cluster)


@pytest.fixture(scope="session")
def runtime(cluster: Any) -> KubernetesRuntime:
    """The adapter under test, connected as envhub would be: through the kubeconfig."""
    return KubernetesRuntime(api_client(str(cluster.kubeconfig)), ready_timeout=30.0)


_ids = itertools.count(90001)


@pytest.fixture
def make_env(kube: Kube) -> Iterator[Callable[..., EnvironmentTarget]]:
    """Targets with session-unique ids (far above the database's); their namespaces go at the end."""
    made: list[EnvironmentTarget] = []

    def make(*, name: str = "dev", generation: int = 1, **spec: Any) -> EnvironmentTarget:
        target = make_target(next(_ids), generation=generation, name=name, **spec)
        made.append(target)
        return target

    yield make
    for target in made:
        kube.delete_namespace(namespace_for(target))


@pytest.fixture
def kube_settings(settings: Settings, cluster: Any, kube: Kube) -> Iterator[Settings]:
    """envhub's settings with the Kubernetes runtime on the test cluster (plus the test DB and Redis).

    The database is emptied for every test, so the namespaces of its environments
    are deleted at the end: a later test's reconciler would see them as orphans.
    """
    values = {
        **settings.model_dump(),
        "runtime": "kubernetes",
        "kubeconfig": str(cluster.kubeconfig),
        "kube_ready_timeout": 20.0,
        "reconcile_interval": 0.5,
        "job_stale_after": 2.0,
    }
    with override_settings(build_settings(**values)) as configured:
        ports.reset()
        yield configured
    ports.reset()
    kube.delete_managed_namespaces()


@pytest.fixture
def workers(kube_settings: Settings, tmp_path: Path) -> Iterator[KubeWorkers]:
    pool = KubeWorkers(kube_settings, tmp_path)
    yield pool
    pool.stop_all()
