"""The apiserver stops: environments keep their phase and say why envhub cannot see them.

A real worker (status watch + reconciler) runs while the test cluster's
kube-apiserver process is stopped and then started again with the same flags
and etcd data.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from envhub.domain.phases import Phase
from envhub.errors import ClusterUnreachable
from envhub.models import Environment, JobRun
from envhub.runtime.base import RuntimeState
from envhub.runtime.kubernetes import KubernetesRuntime
from envhub.services import ports
from envhub.services.environments import create_environment
from envhub.services.inspection import inspect_environment
from envhub.services.projects import create_project
from tests.kube.helpers import Apiserver, KubeWorkers, web_service
from tests.support.db import audit_events, fetch, fetch_all
from tests.support.waiting import wait_for
from tests.support.world import World

pytestmark = [pytest.mark.kube, pytest.mark.slow]


def test_a_ready_environment_stays_ready_while_the_apiserver_is_down(
    cluster: Any,
    runtime: KubernetesRuntime,
    session: Session,
    world: World,
    db: Engine,
    workers: KubeWorkers,
) -> None:
    project = create_project(
        session=session,
        actor=world.owner,
        team_id=world.acme,
        name="shop",
        workloads={"services": [web_service()]},
    )
    assert project.id is not None
    workers.start()
    env = create_environment(
        session=session, actor=world.member, queue=ports.queue(), project_id=project.id, name="pr-1"
    )
    assert env.id is not None
    env_id = env.id

    def current() -> Environment:
        row = fetch(db, Environment, env_id)
        assert row is not None
        return row

    wait_for(lambda: current().phase is Phase.ready, timeout=120, what="ready", describe=workers.log_tail)
    runs_before = len(fetch_all(db, JobRun))
    apiserver = Apiserver(cluster)
    apiserver.stop()
    try:
        # The worker's watch notices and records the condition; the phase stays.
        wait_for(
            lambda: current().condition == "cluster_unreachable",
            timeout=120,
            what="the cluster_unreachable condition",
            describe=workers.log_tail,
        )
        # The port says the same to anyone asking meanwhile, as retryable errors.
        with pytest.raises(ClusterUnreachable) as unreachable:
            runtime.managed_environments()
        assert unreachable.value.retryable
        status = runtime.status(env_id)
        assert (status.state, status.details["condition"]) == (RuntimeState.degraded, "cluster_unreachable")
        seen = inspect_environment(
            session=session, actor=world.member, runtime=runtime, environment_id=env_id
        )
        assert "cannot reach the cluster" in seen.unavailable

        # Several reconciler ticks fail meanwhile; none of them fails the environment.
        wait_for(
            lambda: workers.log_path.read_text().count("reconciler tick skipped: ") >= 3,
            timeout=120,
            what="three reconciler ticks during the outage",
            describe=workers.log_tail,
        )
        during = current()
        assert (during.phase, during.error_code) == (Phase.ready, None)
        assert "cannot reach the cluster" in during.condition_message
    finally:
        apiserver.start()

    wait_for(
        lambda: current().condition is None,
        timeout=120,
        what="the condition to clear",
        describe=workers.log_tail,
    )
    after = current()
    assert (after.phase, after.condition_message) == (Phase.ready, "")
    assert len(fetch_all(db, JobRun)) == runs_before  # nothing was re-provisioned
    changes = [(e.details or {}).get("to") for e in audit_events(db, "environment.condition")]
    assert changes[-2:] == ["cluster_unreachable", None]
