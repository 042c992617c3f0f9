"""envhub's settings and workers on the shared test cluster, for tests/kube.

The cluster itself and the ``kube``, ``runtime`` and ``make_env`` fixtures come
from tests/support/cluster.py (one cluster per test process, shared with
tests/security).

Tests that need the database, Redis or workers combine these fixtures with the
ones in tests/conftest.py (``settings``, ``session``, ``world``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from envhub.config import Settings, override_settings
from envhub.services import ports
from tests.conftest import build_settings
from tests.kube.helpers import Kube, KubeWorkers


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
