"""Every environment in its own namespace, fenced in: labels, quota, limits, network policy, RBAC.

Everything is read back from the real apiserver after ``KubernetesRuntime.apply``;
the quota and RBAC are also shown to be enforced by the apiserver itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from sqlalchemy.engine import Engine
from sqlmodel import Session

from envhub.config import Settings
from envhub.domain.kube import namespace_for
from envhub.domain.phases import Phase
from envhub.domain.specs import EnvironmentTarget
from envhub.errors import QuotaExceeded
from envhub.jobs.environments import converge_environment
from envhub.models import Environment, JobRun, JobStatus
from envhub.runtime.kubernetes import KubernetesRuntime
from envhub.services.environments import create_environment
from envhub.services.projects import create_project
from tests.kube.helpers import Kube, web_service
from tests.support.db import fetch, fetch_all
from tests.support.fakes import FakeQueue
from tests.support.runtime import RecordingProgress
from tests.support.waiting import wait_for
from tests.support.world import World

pytestmark = pytest.mark.kube

MakeEnv = Callable[..., EnvironmentTarget]
POLICIES = {
    "envhub-default-deny",
    "envhub-allow-dns",
    "envhub-allow-same-namespace",
    "envhub-allow-ingress",
    "envhub-allow-egress",
}


def _labels(obj: dict[str, Any]) -> dict[str, str]:
    return dict(obj["metadata"].get("labels") or {})


def _owned_by(obj: dict[str, Any], target: EnvironmentTarget) -> bool:
    labels = _labels(obj)
    return (
        labels.get("app.kubernetes.io/managed-by") == "envhub"
        and labels.get("envhub.dev/environment") == str(target.id)
        and labels.get("envhub.dev/project") == "shop"
        and labels.get("envhub.dev/team") == "acme"
    )


def test_each_environment_gets_its_own_labelled_namespace_with_quota_limits_policies_and_rbac(
    runtime: KubernetesRuntime, kube: Kube, make_env: MakeEnv
) -> None:
    target = make_env(
        services=[web_service()],
        quota={"pods": 5, "cpu": "1", "memory": "1Gi"},
        egress={"cidrs": ["10.1.2.3"], "namespaces": ["shared-db"], "services": ["payments/api:8443"]},
    )
    other = make_env(name="other", services=[web_service()])
    status = runtime.apply(target, progress=RecordingProgress())
    runtime.apply(other, progress=RecordingProgress())
    ns = namespace_for(target)
    assert status.details["namespace"] == ns == f"envhub-acme-shop-dev-{target.id}"
    assert namespace_for(other) != ns

    # The namespace: one per environment, found by its labels.
    assert kube.live_namespaces(target.id) == [ns]
    namespace = kube.get(f"/api/v1/namespaces/{ns}")
    assert namespace is not None
    assert _owned_by(namespace, target)
    assert _labels(namespace)["kubernetes.io/metadata.name"] == ns

    # ResourceQuota: the project's numbers, node ports and load balancers forbidden,
    # and already counted by the quota controller (so it is enforced from the start).
    [quota] = kube.items(f"/api/v1/namespaces/{ns}/resourcequotas")
    assert quota["metadata"]["name"] == "envhub-quota"
    assert _owned_by(quota, target)
    assert quota["spec"]["hard"] == {
        "limits.cpu": "4",
        "limits.memory": "8Gi",
        "persistentvolumeclaims": "5",
        "pods": "5",
        "requests.cpu": "1",
        "requests.memory": "1Gi",
        "requests.storage": "20Gi",
        "services": "10",
        "services.loadbalancers": "0",
        "services.nodeports": "0",
    }
    assert quota["status"]["hard"] == quota["spec"]["hard"]
    assert quota["status"]["used"]["pods"] == "1"

    # LimitRange: defaults for containers that state no resources.
    [limits] = kube.items(f"/api/v1/namespaces/{ns}/limitranges")
    assert limits["metadata"]["name"] == "envhub-limits"
    assert _owned_by(limits, target)
    assert limits["spec"]["limits"] == [
        {
            "type": "Container",
            "default": {"cpu": "500m", "memory": "512Mi"},
            "defaultRequest": {"cpu": "100m", "memory": "128Mi"},
        }
    ]

    # NetworkPolicies: deny all, then one policy per allowed reason.
    policies = {
        p["metadata"]["name"]: p
        for p in kube.items(f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies")
    }
    assert set(policies) == POLICIES
    assert all(_owned_by(p, target) for p in policies.values())
    deny = policies["envhub-default-deny"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}  # no rule: nothing allowed
    dns = policies["envhub-allow-dns"]["spec"]
    assert dns["policyTypes"] == ["Egress"]
    assert dns["egress"][0]["ports"] == [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}} in dns["egress"][0]["to"]  # fmt: skip
    same = policies["envhub-allow-same-namespace"]["spec"]
    assert same["ingress"] == [{"from": [{"podSelector": {}}]}]
    assert same["egress"] == [{"to": [{"podSelector": {}}]}]
    ingress = policies["envhub-allow-ingress"]["spec"]
    assert ingress["policyTypes"] == ["Ingress"]
    assert ingress["ingress"] == [
        {
            "from": [
                {
                    "namespaceSelector": {
                        "matchExpressions": [
                            {
                                "key": "kubernetes.io/metadata.name",
                                "operator": "In",
                                "values": ["envhub-system"],
                            }
                        ]
                    }
                }
            ]
        }
    ]
    egress = policies["envhub-allow-egress"]["spec"]
    assert egress["policyTypes"] == ["Egress"]
    assert egress["egress"] == [
        {"to": [{"ipBlock": {"cidr": "10.1.2.3/32"}}]},
        {
            "to": [
                {
                    "namespaceSelector": {
                        "matchExpressions": [
                            {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["shared-db"]}
                        ]
                    }
                }
            ]
        },
        {
            "to": [
                {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "payments"}},
                    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "api"}},
                }
            ],
            "ports": [{"protocol": "TCP", "port": 8443}],
        },
    ]
    # Without an allowlist there is no egress policy beyond DNS and the namespace itself.
    other_policies = kube.items(
        f"/apis/networking.k8s.io/v1/namespaces/{namespace_for(other)}/networkpolicies"
    )
    assert {p["metadata"]["name"] for p in other_policies} == POLICIES - {"envhub-allow-egress"}

    # RBAC: a read-only identity for workloads, bound in this namespace only.
    account = kube.get(f"/api/v1/namespaces/{ns}/serviceaccounts/envhub-workload")
    assert account is not None
    assert _owned_by(account, target)
    assert account["automountServiceAccountToken"] is False
    role = kube.get(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles/envhub-workload")
    assert role is not None
    assert _owned_by(role, target)
    assert {verb for rule in role["rules"] for verb in rule["verbs"]} == {"get", "list", "watch"}
    assert "secrets" not in {r for rule in role["rules"] for r in rule["resources"]}
    binding = kube.get(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings/envhub-workload")
    assert binding is not None
    assert _owned_by(binding, target)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "envhub-workload",
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "envhub-workload", "namespace": ns}]

    # The workload runs as that account, without its token mounted.
    [pod] = kube.items(f"/api/v1/namespaces/{ns}/pods")
    assert pod["spec"]["serviceAccountName"] == "envhub-workload"
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert _owned_by(pod, target)


def test_a_raw_pod_over_quota_is_refused_with_the_numbers(
    runtime: KubernetesRuntime, make_env: MakeEnv
) -> None:
    pods = "\n---\n".join(
        f"apiVersion: v1\nkind: Pod\nmetadata: {{name: worker-{i}}}\n"
        "spec:\n  containers: [{name: main, image: busybox, command: [sleep, '3600']}]\n"
        for i in (1, 2)
    )
    target = make_env(manifests=pods, quota={"pods": 1})
    with pytest.raises(QuotaExceeded) as refused:
        runtime.apply(target, progress=RecordingProgress())
    error = refused.value
    assert error.code == "quota_exceeded"
    assert error.details == {
        "quota": "envhub-quota",
        "requested": "pods=1",
        "used": "pods=1",
        "limited": "pods=1",
    }
    # Objects of one wave are applied at once: whichever Pod came second is the one refused.
    refused_pod = "worker-2" if "worker-2" in error.message else "worker-1"
    assert f"Pod {namespace_for(target)}/{refused_pod}" in error.message
    assert "requested pods=1, used pods=1, limit pods=1" in error.message


def test_a_deployment_over_the_pod_quota_fails_the_environment_with_quota_exceeded(
    kube_settings: Settings, session: Session, world: World, db: Engine, kube: Kube
) -> None:
    project = create_project(
        session=session,
        actor=world.owner,
        team_id=world.acme,
        name="shop",
        workloads={"services": [web_service(replicas=3)], "quota": {"pods": 2}},
    )
    assert project.id is not None
    queue = FakeQueue()
    env = create_environment(
        session=session, actor=world.member, queue=queue, project_id=project.id, name="big"
    )
    assert env.id is not None

    assert converge_environment(*queue.jobs[-1].args) == "failed: quota_exceeded"  # type: ignore[arg-type]

    failed = fetch(db, Environment, env.id)
    assert failed is not None
    assert (failed.phase, failed.error_code) == (Phase.failed, "quota_exceeded")
    assert "requested pods=1, used pods=2, limit pods=2" in failed.message
    assert "Free resources in the environment or ask for a larger quota" in failed.message
    [run] = fetch_all(db, JobRun)
    assert (run.status, run.error_code) == (JobStatus.failed, "quota_exceeded")
    assert {s["key"]: s["status"] for s in run.steps}["health"] == "failed"
    # The apiserver really refused the third pod: two run, no more.
    [ns] = kube.live_namespaces(env.id)
    assert len(kube.items(f"/api/v1/namespaces/{ns}/pods")) == 2


def test_the_workload_account_cannot_read_other_namespaces_or_write_its_own(
    runtime: KubernetesRuntime, kube: Kube, make_env: MakeEnv
) -> None:
    mine, theirs = make_env(name="mine"), make_env(name="theirs")
    for target in (mine, theirs):
        runtime.apply(target, progress=RecordingProgress())
    home, away = namespace_for(mine), namespace_for(theirs)

    # A real token for envhub-workload (TokenRequest, served by 1.20).
    issued = kube.core.create_namespaced_service_account_token(
        "envhub-workload", home, {"spec": {"expirationSeconds": 600}}
    )
    token = issued.status.token
    assert token
    as_workload = client.CoreV1Api(kube.cluster.api_client(token=token))

    def allowed(call: Callable[[], object]) -> bool:
        try:
            call()
            return True
        except client.ApiException as exc:
            if exc.status == 403:
                return False
            raise

    # RBAC's caches pick the new Role up within moments; then reads at home work...
    wait_for(lambda: allowed(lambda: as_workload.list_namespaced_pod(home)), timeout=30, what="RBAC in home")
    assert allowed(lambda: as_workload.list_namespaced_service(home))
    # ...and nothing else does: other environments, the cluster, secrets, writes.
    assert not allowed(lambda: as_workload.list_namespaced_pod(away))
    assert not allowed(lambda: as_workload.list_namespaced_pod("default"))
    assert not allowed(lambda: as_workload.list_namespace())
    assert not allowed(lambda: as_workload.list_namespaced_secret(home))
    assert not allowed(
        lambda: as_workload.create_namespaced_config_map(home, {"metadata": {"name": "x"}, "data": {}})
    )

    # The apiserver's own verdict for the account, as SubjectAccessReviews.
    user = f"system:serviceaccount:{home}:envhub-workload"

    def review(namespace: str, verb: str, resource: str) -> bool:
        body = {
            "spec": {
                "user": user,
                "groups": [
                    "system:serviceaccounts",
                    f"system:serviceaccounts:{home}",
                    "system:authenticated",
                ],
                "resourceAttributes": {"namespace": namespace, "verb": verb, "resource": resource},
            }
        }
        return bool(kube.authorization.create_subject_access_review(body).status.allowed)

    assert review(home, "list", "pods")
    assert not review(away, "list", "pods")
    assert not review(home, "delete", "networkpolicies")
    assert not review(home, "get", "secrets")
