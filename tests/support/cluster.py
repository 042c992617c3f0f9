"""One real Kubernetes control plane (tests/cluster) per test process, shared by every test that needs it.

A pytest plugin (loaded by tests/conftest.py). ``running_cluster`` starts the
cluster once per test process (~5 s) for tests/kube, tests/security and
anything else that asks for it; namespaces are cheap, cluster starts and
namespace deletions (5-10 s each) are not. tests/support/scheduling.py keeps
every test using it on one test process, so with several processes it starts
once (a test that asks for it from outside that group fails). Without the
cluster's binaries (``make test-cluster`` builds them) the tests fail, naming them.

Every test gets environment ids of its own from :func:`make_env` and its
namespaces are deleted, without waiting, when it ends, so a worker's
reconciler in a later test never finds them as live orphans.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from envhub.domain.kube import namespace_for
from envhub.domain.specs import EnvironmentTarget
from envhub.runtime.kubernetes import KubernetesRuntime, api_client
from tests.kube.helpers import Kube, load_cluster_module
from tests.support.components import require
from tests.support.runtime import make_target
from tests.support.scheduling import group_of


@pytest.fixture(scope="session")
def running_cluster(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The shared test cluster: kube-apiserver, etcd, controller-manager and the test kubelet."""
    first = request._pyfuncitem.nodeid  # the test that starts it
    if group_of(first) != "cluster":
        pytest.fail(
            f"{first} uses the shared test cluster but is not in its test group: "
            "add its path to GROUPS in tests/support/scheduling.py",
            pytrace=False,
        )
    require("cluster")
    with load_cluster_module().TestCluster() as started:
        yield started


@pytest.fixture(scope="session")
def cluster(running_cluster: Any) -> Any:
    return running_cluster


@pytest.fixture(scope="session")
def kube(running_cluster: Any) -> Kube:
    """Admin access to the cluster, for reading back what envhub did (and doing things behind its back)."""
    return Kube(running_cluster)


@pytest.fixture(scope="session")
def runtime(running_cluster: Any) -> KubernetesRuntime:
    """The adapter under test, connected as envhub would be: through the kubeconfig."""
    return KubernetesRuntime(api_client(str(running_cluster.kubeconfig)), ready_timeout=30.0)


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
