"""When a workload has rolled out, and what a release that did not is told (readiness.py, on plain dicts)."""

from __future__ import annotations

from typing import Any

import pytest

from envhub.runtime.kubernetes.readiness import (
    Blocker,
    blockers,
    daemonset_rolled_out,
    deployment_stalled,
    explain,
    job_complete,
    job_failure,
    rolled_out,
    statefulset_rolled_out,
)


def workload(
    kind: str, name: str, spec: dict[str, Any], status: dict[str, Any], generation: int = 2
) -> dict[str, Any]:
    return {
        "kind": kind,
        "metadata": {"name": name, "generation": generation},
        "spec": spec,
        "status": {"observedGeneration": generation, **status},
    }


def statefulset(spec: dict[str, Any] | None = None, **status: Any) -> dict[str, Any]:
    done = {
        "replicas": 2,
        "readyReplicas": 2,
        "updatedReplicas": 2,
        "currentRevision": "a",
        "updateRevision": "a",
    }
    return workload("StatefulSet", "db", {"replicas": 2, **(spec or {})}, {**done, **status})


def daemonset(spec: dict[str, Any] | None = None, **status: Any) -> dict[str, Any]:
    done = {"desiredNumberScheduled": 3, "updatedNumberScheduled": 3, "numberAvailable": 3}
    return workload("DaemonSet", "agent", spec or {}, {**done, **status})


def job(*conditions: tuple[str, str], **status: Any) -> dict[str, Any]:
    listed = [
        {"type": kind, "status": "True", "reason": reason, "message": f"{kind} says so"}
        for kind, reason in conditions
    ]
    return workload("Job", "migrate", {}, {"conditions": listed, **status})


def pod(
    name: str, owner: tuple[str, str], *, labels: dict[str, str] | None = None, **status: Any
) -> dict[str, Any]:
    kind, owner_name = owner
    return {
        "metadata": {
            "name": name,
            "labels": labels or {},
            "ownerReferences": [{"kind": kind, "name": owner_name, "controller": True}],
        },
        "status": status,
    }


def crashing(name: str, owner: tuple[str, str], code: int = 3, **kw: Any) -> dict[str, Any]:
    container = {
        "name": "main",
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 4s"}},
        "lastState": {"terminated": {"exitCode": code}},
        "restartCount": 2,
    }
    return pod(name, owner, phase="Running", containerStatuses=[container], **kw)


def test_a_statefulset_has_rolled_out_when_every_replica_is_ready_at_the_update_revision() -> None:
    assert statefulset_rolled_out(statefulset())
    assert not statefulset_rolled_out(statefulset(observedGeneration=1))  # the controller has not seen it
    assert not statefulset_rolled_out(statefulset(readyReplicas=1))
    assert not statefulset_rolled_out(statefulset(updatedReplicas=1))
    assert not statefulset_rolled_out(statefulset(updateRevision="b"))
    # A partition holds back the replicas below it; OnDelete replaces pods only when they are deleted.
    partitioned = {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}}
    assert statefulset_rolled_out(statefulset(partitioned, updatedReplicas=1, updateRevision="b"))
    assert statefulset_rolled_out(statefulset({"updateStrategy": {"type": "OnDelete"}}, updatedReplicas=0))
    assert statefulset_rolled_out(workload("StatefulSet", "db", {"replicas": 0}, {}))


def test_a_daemonset_has_rolled_out_when_updated_and_available_everywhere() -> None:
    assert daemonset_rolled_out(daemonset())
    assert not daemonset_rolled_out(daemonset(observedGeneration=1))
    assert not daemonset_rolled_out(daemonset(updatedNumberScheduled=2))
    assert not daemonset_rolled_out(daemonset(numberAvailable=2))
    assert daemonset_rolled_out(daemonset({"updateStrategy": {"type": "OnDelete"}}, updatedNumberScheduled=0))


def test_a_job_is_done_when_complete_and_failed_for_good_when_failed() -> None:
    assert job_complete(job(("Complete", "")))
    assert rolled_out(job(("Complete", "")))
    assert not rolled_out(job(active=1))
    failed = job(("Failed", "BackoffLimitExceeded"))
    assert not job_complete(failed)
    failure = job_failure(failed)
    assert failure is not None
    assert failure["reason"] == "BackoffLimitExceeded"
    assert job_failure(job(active=1)) is None


def test_a_deployment_has_stalled_once_its_controller_observed_it_past_its_progress_deadline() -> None:
    def deployment(status: str, reason: str, observed: int = 2) -> dict[str, Any]:
        made = workload("Deployment", "web", {"replicas": 1}, {"replicas": 1})
        made["status"]["observedGeneration"] = observed
        made["status"]["conditions"] = [
            {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"},
            {"type": "Progressing", "status": status, "reason": reason},
        ]
        return made

    stalled = deployment_stalled(deployment("False", "ProgressDeadlineExceeded"))
    assert stalled is not None
    assert stalled["reason"] == "ProgressDeadlineExceeded"
    [named] = blockers([deployment("False", "ProgressDeadlineExceeded")], [])
    assert (named.workload, named.reason) == ("Deployment/web", "ProgressDeadlineExceeded")
    assert deployment_stalled(deployment("True", "ReplicaSetUpdated")) is None
    # The condition of the rollout before this generation: the new one has not been looked at yet.
    assert deployment_stalled(deployment("False", "ProgressDeadlineExceeded", observed=1)) is None
    assert deployment_stalled(statefulset()) is None


@pytest.mark.parametrize(
    ("obj", "done"),
    [
        (
            workload(
                "Deployment",
                "web",
                {"replicas": 1},
                {"updatedReplicas": 1, "availableReplicas": 1, "replicas": 1},
            ),
            True,
        ),
        (workload("Deployment", "web", {"replicas": 1}, {"updatedReplicas": 1, "replicas": 1}), False),
        (statefulset(), True),
        (daemonset(numberAvailable=0), False),
    ],
)
def test_rolled_out_judges_each_kind_by_its_own_rule(obj: dict[str, Any], done: bool) -> None:
    assert rolled_out(obj) is done


def test_each_workload_not_rolled_out_is_named_with_the_reason_its_pods_give() -> None:
    web = workload("Deployment", "web", {"replicas": 1}, {"updatedReplicas": 1, "replicas": 1})
    db = statefulset(readyReplicas=1)
    agent = daemonset(numberAvailable=2)
    migrate = job(("Failed", "BackoffLimitExceeded"))
    ready = workload(
        "Deployment", "api", {"replicas": 1}, {"updatedReplicas": 1, "availableReplicas": 1, "replicas": 1}
    )
    unscheduled = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": "0/1 nodes",
    }
    pods = [
        # A ReplicaSet's pod is its Deployment's.
        pod(
            "web-5d9c-x1",
            ("ReplicaSet", "web-5d9c"),
            labels={"pod-template-hash": "5d9c"},
            phase="Pending",
            conditions=[unscheduled],
        ),
        crashing("db-1", ("StatefulSet", "db")),
        pod(
            "migrate-abc",
            ("Job", "migrate"),
            phase="Failed",
            containerStatuses=[{"name": "main", "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}],
        ),
        crashing(
            "api-7f-x", ("ReplicaSet", "api-7f"), labels={"pod-template-hash": "7f"}
        ),  # rolled out: not named
    ]
    found = blockers([web, db, agent, ready, migrate], pods)
    assert found == [
        Blocker(
            "Job/migrate", "BackoffLimitExceeded", "Failed says so; migrate-abc/main: exited with code 1"
        ),
        Blocker("Deployment/web", "Unschedulable", "web-5d9c-x1: pending (0/1 nodes)"),
        Blocker(
            "StatefulSet/db", "CrashLoopBackOff", "db-1/main: crash loop (last exit code 3; back-off 4s)"
        ),
        Blocker("DaemonSet/agent", "NotRolledOut", "3 of 3 updated, 2 available"),
    ]
    assert found[2].as_dict() == {
        "workload": "StatefulSet/db",
        "reason": "CrashLoopBackOff",
        "message": "db-1/main: crash loop (last exit code 3; back-off 4s)",
    }
    assert str(found[3]) == "DaemonSet/agent: NotRolledOut (3 of 3 updated, 2 available)"


def test_the_explanation_leaves_out_pods_of_what_has_rolled_out() -> None:
    done = job(("Complete", ""))
    waiting = statefulset(readyReplicas=1)
    finished = pod(
        "migrate-abc",
        ("Job", "migrate"),
        phase="Succeeded",
        containerStatuses=[{"name": "main", "state": {"terminated": {"exitCode": 0}}}],
    )
    readiness = explain([done, waiting], [finished, crashing("db-1", ("StatefulSet", "db"))])
    assert not readiness.ready
    assert readiness.message == "db-1/main: crash loop (last exit code 3; back-off 4s)"
    assert explain([done], [finished]).message == "all workloads available (migrate)"


def test_a_failing_init_container_is_what_is_named() -> None:
    waiting = statefulset(readyReplicas=0)
    crash = crashing("db-0", ("StatefulSet", "db"), code=5)
    init = crash["status"]["containerStatuses"][0] | {"name": "migrate"}
    crash["status"] |= {
        "phase": "Pending",
        "initContainerStatuses": [init],
        "containerStatuses": [{"name": "main", "state": {"waiting": {"reason": "PodInitializing"}}}],
    }
    [blocker] = blockers([waiting], [crash])
    assert blocker == Blocker(
        "StatefulSet/db",
        "CrashLoopBackOff",
        "db-0/migrate (init): crash loop (last exit code 5; back-off 4s)",
    )
    # An init container that finished, or whose turn has not come, says nothing.
    init["state"] = {"terminated": {"exitCode": 0, "reason": "Completed"}}
    assert explain([waiting], [crash]).message == "db-0/main: PodInitializing"
