"""How ``make test`` spreads tests over its processes: tests sharing an expensive fixture stay together.

Each test process owns its PostgreSQL and Redis, which are cheap. The shared
test cluster (tests/support/cluster.py) and the browser suite's envhub (a real
``make run``, whose frontend build lives in the checkout, so two at once would
overwrite each other's) are not: every test of such a group runs on one
process, one after the other, while other processes take the rest one test at
a time.

xdist's own ``--dist loadgroup`` reads ``xdist_group`` marks by rewriting node
ids, which pytest 9 no longer honours, so the groups are named here by path
and the scheduler below (xdist's loadgroup scheduling, given these groups)
is used whatever ``--dist`` says. :func:`group_of` is also what
``running_cluster`` checks, so a test elsewhere that asks for the cluster
fails rather than start a second one beside the group's.
"""

from __future__ import annotations

from typing import Any

import pytest

# node id prefix -> group
GROUPS = {
    "tests/kube/": "cluster",
    "tests/security/test_kube_escalation.py": "cluster",
    "tests/cli/test_kubeconfig.py": "cluster",
    "tests/browser/": "browser",
}


def group_of(nodeid: str) -> str | None:
    for prefix, group in GROUPS.items():
        if nodeid.startswith(prefix):
            return group
    return None


@pytest.hookimpl(optionalhook=True)  # an xdist hook: unknown when xdist is off (-p no:xdist)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    from xdist.scheduler import LoadGroupScheduling

    class PathGroupScheduling(LoadGroupScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid) or nodeid

    return PathGroupScheduling(config, log)
