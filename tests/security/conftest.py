"""The attack tests that need the real cluster use tests/kube's fixtures.

Imported fixtures are registered again here, so a run of tests/kube and
tests/security together starts the cluster once per directory.
"""

from tests.kube.conftest import cluster, kube, make_env, runtime

__all__ = ["cluster", "kube", "make_env", "runtime"]
