"""Jobs and reconciler passes move the metrics of the process that runs them.

In-process, against the real database, Redis and local runtime; the figures are
read from prometheus_client's registry of this process (tests/integration/
test_metrics_scrape.py scrapes a real worker over HTTP). They carry over
between tests, so each test compares after with before.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY
from sqlmodel import Session

from envhub.config import Settings
from envhub.jobs.environments import converge_environment
from envhub.jobs.observed import observed, outcome_of
from envhub.jobs.reconciler import ReconcilerThread
from envhub.models import Project
from envhub.runtime.local import LocalRuntime
from envhub.services import ports
from envhub.services.environments import create_environment
from tests.support.fakes import FakeQueue
from tests.support.runtime import kill_environments
from tests.support.world import World

pytestmark = pytest.mark.database("postgresql")  # the figures do not depend on the database


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def runtime(settings: Settings) -> Iterator[LocalRuntime]:
    built = ports.runtime()
    assert isinstance(built, LocalRuntime)
    yield built
    kill_environments(built)


def test_a_provisioning_job_is_counted_timed_and_its_request_to_ready_observed(
    session: Session, world: World, project: Project, runtime: LocalRuntime
) -> None:
    queue = FakeQueue()
    ready = {"kind": "converge_environment", "outcome": "ready"}
    done_before = value("envhub_jobs_total", **ready)
    timed_before = value("envhub_job_duration_seconds_count", kind="converge_environment")
    provisioned_before = value("envhub_provisioning_duration_seconds_count", kind="provision")
    nothing_before = value("envhub_jobs_total", kind="converge_environment", outcome="nothing_to_do")

    assert project.id is not None
    env = create_environment(
        session=session, actor=world.member, queue=queue, project_id=project.id, name="pr-1"
    )
    assert env.id is not None
    assert converge_environment(*queue.jobs[-1].args) == "ready"  # type: ignore[arg-type]
    assert converge_environment(*queue.jobs[-1].args) == "nothing to do"  # type: ignore[arg-type]

    assert value("envhub_jobs_total", **ready) == done_before + 1
    assert (
        value("envhub_jobs_total", kind="converge_environment", outcome="nothing_to_do") == nothing_before + 1
    )
    assert value("envhub_job_duration_seconds_count", kind="converge_environment") == timed_before + 2
    assert value("envhub_provisioning_duration_seconds_count", kind="provision") == provisioned_before + 1
    # A run that did nothing is no provisioning: only the one that reached ready was observed.
    assert value("envhub_provisioning_duration_seconds_sum", kind="provision") > 0


def test_a_reconciler_pass_is_timed_and_the_drift_it_found_counted(
    session: Session, world: World, project: Project, runtime: LocalRuntime, settings: Settings
) -> None:
    passes_before = value("envhub_reconciler_pass_duration_seconds_count", outcome="ok")
    orphans_before = value("envhub_reconciler_drift_total", kind="orphans_removed")
    restarted_before = value("envhub_reconciler_drift_total", kind="restarted")
    runtime.workspace_path(4242).mkdir(parents=True)  # an environment nobody knows: an orphan

    ReconcilerThread._tick()
    assert value("envhub_reconciler_pass_duration_seconds_count", outcome="ok") == passes_before + 1
    assert value("envhub_reconciler_drift_total", kind="orphans_removed") == orphans_before + 1
    assert value("envhub_reconciler_drift_total", kind="restarted") == restarted_before

    ReconcilerThread._tick()  # nothing astray any more
    assert value("envhub_reconciler_pass_duration_seconds_count", outcome="ok") == passes_before + 2
    assert value("envhub_reconciler_drift_total", kind="orphans_removed") == orphans_before + 1


def test_a_job_that_raises_counts_as_an_error_and_is_still_timed() -> None:
    @observed
    def sample_job(fail: bool) -> str:
        if fail:
            raise RuntimeError("the job broke")
        return "failed: quota_exceeded"

    assert sample_job.__name__ == "sample_job"  # RQ finds it by its dotted path
    with pytest.raises(RuntimeError):
        sample_job(True)
    assert sample_job(False) == "failed: quota_exceeded"
    assert value("envhub_jobs_total", kind="sample_job", outcome="error") == 1
    assert value("envhub_jobs_total", kind="sample_job", outcome="failed") == 1
    assert value("envhub_job_duration_seconds_count", kind="sample_job") == 2


@pytest.mark.parametrize(
    ("result", "outcome"),
    [
        ("ready", "ready"),
        ("deleted", "deleted"),
        ("nothing to do", "nothing_to_do"),
        ("removing: looking again within 2s", "removing"),
        ("retrying: the cluster is not reachable yet", "retrying"),
        ("failed: quota_exceeded", "failed"),
        ("error", "error"),
        ("#42 opened: creating pr-42 at 1a2b3c4d5e6f", "done"),
        ("rendered; 2 release(s) moved on", "done"),
        ("readying", "done"),
        (None, "done"),
    ],
)
def test_a_jobs_result_line_becomes_one_of_a_few_outcomes(result: object, outcome: str) -> None:
    assert outcome_of(result) == outcome
