"""Climbing out of an environment's namespace, tried on the real apiserver (v1.20, tests/cluster).

The attack: a project's manifests (a pull request can change them) give a
ServiceAccount a Role that creates pods, bind it, and run a pod as that
account; that pod then creates a privileged pod on the node, which envhub's
manifest guard never sees. On v1.20 no Pod Security admission exists, so the
first test shows the chain really works against a bare apiserver; the others
show envhub refuses every link of it before anything is applied, and that
the namespace it works in is envhub's by name as well as by label.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client

from envhub.config import override_settings
from envhub.domain.kube import EgressDenied, EgressDenyList, ManifestRejected, namespace_for
from envhub.domain.specs import EnvironmentTarget
from envhub.errors import NotFound, NotReady
from envhub.runtime import get_runtime
from envhub.runtime.base import RuntimeState, RuntimeStatus
from envhub.runtime.kubernetes import KubernetesRuntime, api_client
from envhub.runtime.kubernetes.watching import DeploymentWatcher
from tests.conftest import build_settings
from tests.kube.helpers import Kube
from tests.support.runtime import RecordingProgress
from tests.support.waiting import wait_for

pytestmark = pytest.mark.kube

MakeEnv = Callable[..., EnvironmentTarget]
RBAC = "rbac.authorization.k8s.io/v1"
MANAGED = {"app.kubernetes.io/managed-by": "envhub"}
_scratch = itertools.count(1)

ACCOUNT = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "builder"}}
POD_CREATOR = {
    "apiVersion": RBAC,
    "kind": "Role",
    "metadata": {"name": "pod-creator"},
    "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "get"]}],
}
BINDING = {
    "apiVersion": RBAC,
    "kind": "RoleBinding",
    "metadata": {"name": "builder-creates-pods"},
    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-creator"},
    "subjects": [{"kind": "ServiceAccount", "name": "builder"}],
}
# What the builder's pod would create once the account may: the node's root
# filesystem, its network and its processes.
PRIVILEGED_POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "escape"},
    "spec": {
        "hostNetwork": True,
        "hostPID": True,
        "automountServiceAccountToken": False,
        "containers": [
            {
                "name": "root",
                "image": "busybox",  # no command: the test kubelet then runs nothing on this machine
                "securityContext": {"privileged": True},
                "volumeMounts": [{"name": "host", "mountPath": "/host"}],
            }
        ],
        "volumes": [{"name": "host", "hostPath": {"path": "/"}}],
    },
}
BUILDER = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "builder"},
    "spec": {
        "selector": {"matchLabels": {"app": "builder"}},
        "template": {
            "metadata": {"labels": {"app": "builder"}},
            "spec": {
                "serviceAccountName": "builder",
                "automountServiceAccountToken": True,
                "containers": [{"name": "b", "image": "bitnami/kubectl", "command": ["sleep", "3600"]}],
            },
        },
    },
}


def _allowed(call: Callable[[], object]) -> bool:
    try:
        call()
    except client.ApiException as exc:
        if exc.status == 403:
            return False
        raise
    return True


@pytest.fixture
def scratch(kube: Kube) -> Iterator[str]:
    """A namespace envhub knows nothing of, deleted at the end."""
    name = f"scratch-{next(_scratch)}"
    kube.core.create_namespace({"metadata": {"name": name}})
    yield name
    kube.delete_namespace(name)


def test_without_envhub_the_chain_really_puts_a_privileged_pod_on_the_node(kube: Kube, scratch: str) -> None:
    kube.core.create_namespaced_service_account(scratch, ACCOUNT)
    kube.rbac.create_namespaced_role(scratch, POD_CREATOR)
    kube.rbac.create_namespaced_role_binding(scratch, BINDING)
    token = kube.core.create_namespaced_service_account_token(
        "builder", scratch, {"spec": {"expirationSeconds": 600}}
    ).status.token
    as_builder = client.CoreV1Api(kube.cluster.api_client(token=token))
    kube.cluster.wait_for_service_account(scratch)

    # What the builder's pod would do with its mounted token.
    wait_for(
        lambda: _allowed(lambda: as_builder.create_namespaced_pod(scratch, PRIVILEGED_POD)),
        timeout=30,
        what="the builder account creating a privileged pod",
    )
    pod = kube.get(f"/api/v1/namespaces/{scratch}/pods/escape")
    assert pod is not None
    assert pod["spec"]["hostNetwork"] is True
    assert pod["spec"]["containers"][0]["securityContext"]["privileged"] is True


def _nothing_of(kube: Kube, target: EnvironmentTarget) -> None:
    """No namespace, and no object of the environment's anywhere in the cluster."""
    assert kube.live_namespaces(target.id) == []
    assert kube.get(f"/api/v1/namespaces/{namespace_for(target)}") is None
    selector = f"envhub.dev/environment={target.id}"
    for path in (
        "/api/v1/serviceaccounts",
        "/api/v1/pods",
        "/apis/apps/v1/deployments",
        "/apis/rbac.authorization.k8s.io/v1/roles",
        "/apis/rbac.authorization.k8s.io/v1/rolebindings",
    ):
        assert kube.items(path, labelSelector=selector) == [], path
    for path in ("/apis/rbac.authorization.k8s.io/v1/roles", "/api/v1/serviceaccounts"):
        names = {
            item["metadata"]["name"]
            for item in kube.items(path)
            if item["metadata"]["namespace"].startswith("envhub-")  # labels or not
        }
        assert not names & {"pod-creator", "builder", "deployer"}, path


@pytest.mark.parametrize(
    ("chain", "refused", "field"),
    [
        ([ACCOUNT, POD_CREATOR, BINDING, BUILDER], "Role/pod-creator", "rules[0].resources"),
        (
            [
                ACCOUNT,
                {
                    **POD_CREATOR,
                    "metadata": {"name": "deployer"},
                    "rules": [
                        {
                            "apiGroups": ["apps"],
                            "resources": ["deployments"],
                            "resourceNames": ["web"],
                            "verbs": ["patch"],
                        }
                    ],
                },
                {**BINDING, "roleRef": {**BINDING["roleRef"], "name": "deployer"}},
                BUILDER,
            ],
            "Role/deployer",
            "rules[0].resources",
        ),
        (
            [
                ACCOUNT,
                {**BINDING, "roleRef": {**BINDING["roleRef"], "kind": "ClusterRole", "name": "edit"}},
                BUILDER,
            ],
            "RoleBinding/builder-creates-pods",
            "roleRef.name",
        ),
        ([ACCOUNT, PRIVILEGED_POD], "Pod/escape", "spec.hostNetwork"),
    ],
    ids=["pods-create", "deployments-patch-by-name", "edit-clusterrole", "privileged-pod"],
)
def test_envhub_refuses_every_link_before_anything_is_applied(
    runtime: KubernetesRuntime,
    kube: Kube,
    make_env: MakeEnv,
    chain: list[dict[str, Any]],
    refused: str,
    field: str,
) -> None:
    target = make_env(manifests=yaml.safe_dump_all(chain))
    with pytest.raises(ManifestRejected) as rejected:
        runtime.apply(target, progress=RecordingProgress())
    error = rejected.value
    assert error.code == "manifest_rejected"
    assert (error.details["object"], error.details["field"]) == (refused, field)
    _nothing_of(kube, target)


# -- Pod Security admission labels -------------------------------------------------


def test_every_environment_namespace_carries_pod_security_labels(
    runtime: KubernetesRuntime, kube: Kube, make_env: MakeEnv, cluster: Any
) -> None:
    target = make_env()
    runtime.apply(target, progress=RecordingProgress())
    namespace = kube.get(f"/api/v1/namespaces/{namespace_for(target)}")
    assert namespace is not None
    labels = namespace["metadata"]["labels"]
    assert {k: v for k, v in labels.items() if k.startswith("pod-security.kubernetes.io/")} == {
        "pod-security.kubernetes.io/enforce": "baseline",
        "pod-security.kubernetes.io/enforce-version": "latest",
        "pod-security.kubernetes.io/audit": "baseline",
        "pod-security.kubernetes.io/audit-version": "latest",
        "pod-security.kubernetes.io/warn": "baseline",
        "pod-security.kubernetes.io/warn-version": "latest",
    }

    # ENVHUB_KUBE_POD_SECURITY=restricted, through the runtime envhub builds from its settings.
    settings = build_settings(
        runtime="kubernetes", kubeconfig=str(cluster.kubeconfig), kube_pod_security="restricted"
    )
    with override_settings(settings):
        strict = get_runtime(settings)
        other = make_env(name="strict")
        strict.apply(other, progress=RecordingProgress())
    namespace = kube.get(f"/api/v1/namespaces/{namespace_for(other)}")
    assert namespace is not None
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/warn"] == "restricted"


# -- egress: the deny list ----------------------------------------------------------


def test_the_egress_policy_never_opens_metadata_or_the_api_server(
    kube: Kube, make_env: MakeEnv, cluster: Any
) -> None:
    runtime = KubernetesRuntime(
        api_client(str(cluster.kubeconfig)),
        deny=EgressDenyList(namespaces=("envhub-system",)),
        ready_timeout=30.0,
    )
    target = make_env(egress={"cidrs": ["0.0.0.0/0"]})
    runtime.apply(target, progress=RecordingProgress())
    policy = kube.get(
        f"/apis/networking.k8s.io/v1/namespaces/{namespace_for(target)}/networkpolicies/envhub-allow-egress"
    )
    assert policy is not None
    [rule] = policy["spec"]["egress"]
    [peer] = rule["to"]
    service = kube.get("/api/v1/namespaces/default/services/kubernetes")
    assert service is not None
    api_server_ip = service["spec"]["clusterIP"]
    assert peer["ipBlock"]["cidr"] == "0.0.0.0/0"
    assert set(peer["ipBlock"]["except"]) >= {
        "169.254.169.254/32",
        "100.100.100.200/32",
        f"{api_server_ip}/32",  # the kubernetes Service
        "127.0.0.1/32",  # where envhub itself reaches this apiserver
    }

    for egress in (
        {"cidrs": ["169.254.169.254/32"]},
        {"cidrs": [f"{api_server_ip}/32"]},
        {"namespaces": ["kube-system"]},
        {"namespaces": ["envhub-system"]},
        {"services": ["default/kubernetes:443"]},
    ):
        denied = make_env(name="denied", egress=egress)
        with pytest.raises(EgressDenied) as refused:
            runtime.apply(denied, progress=RecordingProgress())
        assert refused.value.code == "egress_denied"
        assert kube.live_namespaces(denied.id) == []


# -- namespaces are found by name and label, never label alone ----------------------


def _decoy(kube: Kube, environment_id: int) -> str:
    """A namespace someone labelled as envhub's environment, under a name envhub never gives."""
    name = f"aaa-decoy-{environment_id}"  # sorts before every envhub-... name
    labels = {**MANAGED, "envhub.dev/environment": str(environment_id), "kubernetes.io/metadata.name": name}
    kube.core.create_namespace({"metadata": {"name": name, "labels": labels}})
    kube.cluster.wait_for_service_account(name)
    deployment = {
        "metadata": {"name": "bait", "labels": {**MANAGED, "envhub.dev/environment": str(environment_id)}},
        "spec": {
            "selector": {"matchLabels": {"app": "bait"}},
            "template": {
                "metadata": {"labels": {"app": "bait"}},
                "spec": {"containers": [{"name": "bait", "image": "busybox"}]},
            },
        },
    }
    kube.apps.create_namespaced_deployment(name, deployment)
    return name


def test_a_namespace_with_envhubs_labels_but_not_its_name_is_never_used(
    runtime: KubernetesRuntime, kube: Kube, make_env: MakeEnv
) -> None:
    real, gone = make_env(name="real"), make_env(name="gone")  # "gone" never had a namespace
    runtime.apply(real, progress=RecordingProgress())
    decoys = [_decoy(kube, real.id), _decoy(kube, gone.id)]
    try:
        # The real environment: its own namespace, whatever else carries its labels.
        assert runtime.status(real.id).details["namespace"] == namespace_for(real)
        assert runtime.inspect(real.id).location == namespace_for(real)
        credentials = runtime.issue_credentials(real.id, ttl_seconds=600)
        assert credentials.namespace == namespace_for(real)

        # An environment without a namespace: the decoy is not it.
        assert runtime.status(gone.id).state is RuntimeState.absent
        assert gone.id not in runtime.managed_environments()
        assert real.id in runtime.managed_environments()
        with pytest.raises(NotFound):
            runtime.issue_credentials(gone.id, ttl_seconds=600)
        with pytest.raises(NotReady):
            runtime.exec(gone.id)
        progress = RecordingProgress()
        runtime.destroy(gone.id, progress=progress)  # as the reconciler does with an orphan
        assert ("skip", "stop", "no namespace") in progress.events

        # Status from the cluster-wide watch ignores Deployments outside envhub's namespaces.
        reported: dict[int, RuntimeStatus] = {}
        DeploymentWatcher(runtime.api, lambda env, status: reported.__setitem__(env, status)).relist()
        assert gone.id not in reported
        assert real.id not in reported  # real has no Deployment: the bait is not its workload

        for name in decoys:
            decoy = kube.get(f"/api/v1/namespaces/{name}")
            assert decoy is not None
            assert decoy["status"]["phase"] == "Active"
            assert kube.get(f"/apis/apps/v1/namespaces/{name}/deployments/bait") is not None
    finally:
        for name in decoys:
            kube.delete_namespace(name)
