"""Git credentials in a Kubernetes workspace, as rendered (domain/kube/git_credentials.py, workspace.py).

The workspace pod of a project whose repository is on GitHub gets the workload
account's token for envhub (projected, ten minutes), envhub's helper beside it
(read-only, executable), git's configuration for the repository's origin alone,
and one policy that lets it reach envhub's web pods; nothing of it without a
repository origin or without envhub's address, and nothing for the clone.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from envhub.domain.kube import git_credentials as git
from envhub.domain.kube import render_environment
from envhub.domain.kube.errors import ManifestRejected
from envhub.domain.kube.guards import check_object
from envhub.domain.kube.workspace import WORKSPACE, WorkspaceSettings
from tests.unit.kube.test_kube_workspace import target

ORIGIN = "https://github.com"
WEB = git.EnvhubWeb(
    url="http://envhub-web.envhub.svc:80",
    namespace="envhub",
    pods={"app.kubernetes.io/name": "envhub", "app.kubernetes.io/component": "web"},
    port=3000,
)
WITH_GIT = WorkspaceSettings(envhub=WEB)


def rendered(settings: WorkspaceSettings = WITH_GIT, origin: str = ORIGIN) -> list[dict[str, Any]]:
    return render_environment(dataclasses.replace(target(), git_origin=origin), workspace=settings)


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any] | None:
    return next((o for o in objects if (o["kind"], o["metadata"]["name"]) == (kind, name)), None)


def test_the_workspace_pod_gets_a_token_for_envhub_the_helper_and_gits_configuration() -> None:
    objects = rendered()
    pod = find(objects, "Deployment", WORKSPACE)["spec"]["template"]["spec"]  # type: ignore[index]
    [volume] = [v for v in pod["volumes"] if v["name"] == git.VOLUME]
    token, helper = volume["projected"]["sources"]
    # The workload account's token, for envhub alone, renewed by the kubelet; no other token is mounted.
    assert token == {"serviceAccountToken": {"audience": "envhub", "expirationSeconds": 600, "path": "token"}}
    assert pod["serviceAccountName"] == "envhub-workload"
    assert pod["automountServiceAccountToken"] is False
    assert helper["configMap"] == {
        "name": git.HELPER_CONFIG_MAP,
        "items": [{"key": git.HELPER_NAME, "path": git.HELPER_NAME, "mode": 0o555}],
    }
    [container] = pod["containers"]
    assert {"name": git.VOLUME, "mountPath": git.MOUNT, "readOnly": True} in container["volumeMounts"]
    env = {e["name"]: e["value"] for e in container["env"]}
    helper_command = f"{git.MOUNT}/{git.HELPER_NAME} http://envhub-web.envhub.svc:80/api/v1/environment-identity/git-credentials"
    assert {k: v for k, v in env.items() if k.startswith("GIT_CONFIG_")} == {
        "GIT_CONFIG_COUNT": "2",
        "GIT_CONFIG_KEY_0": "credential.https://github.com.helper",
        "GIT_CONFIG_VALUE_0": "",
        "GIT_CONFIG_KEY_1": "credential.https://github.com.helper",
        "GIT_CONFIG_VALUE_1": helper_command,
    }
    # The clone authenticates with envhub's fetch token, never with this.
    [clone] = pod["initContainers"]
    assert all(m["name"] != git.VOLUME for m in clone["volumeMounts"])
    assert not any(e["name"].startswith("GIT_CONFIG") for e in clone["env"])

    config_map = find(objects, "ConfigMap", git.HELPER_CONFIG_MAP)
    assert config_map is not None
    assert config_map["data"] == {git.HELPER_NAME: git.HELPER_SCRIPT}
    assert config_map["metadata"]["labels"]["envhub.dev/environment"] == "7"
    names = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert names.index(("ConfigMap", git.HELPER_CONFIG_MAP)) < names.index(("Deployment", WORKSPACE))


def test_one_policy_lets_the_workspace_reach_envhubs_web_pods_on_their_port() -> None:
    policy = find(rendered(), "NetworkPolicy", git.POLICY_ALLOW_ENVHUB)
    assert policy is not None
    assert policy["spec"] == {
        "podSelector": {
            "matchLabels": {"app.kubernetes.io/name": WORKSPACE, "envhub.dev/service": WORKSPACE}
        },
        "policyTypes": ["Egress"],
        "egress": [
            {
                "to": [
                    {
                        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "envhub"}},
                        "podSelector": {"matchLabels": dict(WEB.pods)},
                    }
                ],
                "ports": [{"protocol": "TCP", "port": 3000}],
            }
        ],
    }


@pytest.mark.parametrize(
    ("settings", "origin"),
    [(WorkspaceSettings(), ORIGIN), (WITH_GIT, "")],
    ids=["no-envhub-url", "no-github"],
)
def test_without_envhubs_address_or_a_repository_origin_nothing_is_added(
    settings: WorkspaceSettings, origin: str
) -> None:
    objects = rendered(settings, origin)
    assert find(objects, "ConfigMap", git.HELPER_CONFIG_MAP) is None
    assert find(objects, "NetworkPolicy", git.POLICY_ALLOW_ENVHUB) is None
    pod = find(objects, "Deployment", WORKSPACE)["spec"]["template"]["spec"]  # type: ignore[index]
    assert all(v["name"] != git.VOLUME for v in pod["volumes"])
    assert not any(e["name"].startswith("GIT_CONFIG") for e in pod["containers"][0]["env"])


def test_a_manifest_cannot_replace_the_helper_or_the_policy() -> None:
    for obj in (
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": git.HELPER_CONFIG_MAP}, "data": {}},
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": git.POLICY_ALLOW_ENVHUB},
        },
    ):
        with pytest.raises(ManifestRejected) as refused:
            check_object(obj, namespace="envhub-acme-shop-dev-7")
        assert refused.value.details["reason"] == "reserved_name"


def test_a_reviewed_user_name_maps_to_a_workload_account_and_its_environment() -> None:
    assert git.workload_account("system:serviceaccount:envhub-acme-shop-dev-7:envhub-workload") == (
        "envhub-acme-shop-dev-7",
        "envhub-workload",
    )
    for other in (
        "admin",
        "system:serviceaccount:ns",
        "system:serviceaccount::a",
        "system:serviceaccount:a:b:c",
    ):
        assert git.workload_account(other) is None
    assert git.is_workspace_account("envhub-workload")
    assert not git.is_workspace_account("default")
    assert git.environment_of_namespace("envhub-acme-shop-dev-7") == 7
    for other in ("kube-system", "envhub-acme-shop-dev", "7", "envhub-x-" + "9" * 19):
        assert git.environment_of_namespace(other) is None


def test_only_a_jwt_shaped_token_is_worth_asking_the_cluster_about() -> None:
    assert git.looks_like_service_account_token(
        "eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOlsiZW52aHViIl19.c2lnbmF0dXJlX2J5dGVz"
    )
    for other in (
        "",
        "ehp_abcdefghijklmnop",
        "a.b.c",
        "eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOlsiZW52aHViIl19",
        "x y.z",
    ):
        assert not git.looks_like_service_account_token(other)
