"""Git credentials in a Kubernetes workspace, on the real apiserver: the token the kubelet projects.

The workspace is applied with envhub's address: the apiserver takes its pod's
projected token (audience envhub, ten minutes), the helper's ConfigMap and the
policy to envhub's web pods. A token the TokenRequest API mints for the
environment's workload account, bound to that pod and for envhub (as the
kubelet asks for it), is reviewed by the runtime with a real TokenReview and
names the environment; a token for another audience, another account, another
namespace, or no token the cluster signed, names none. End to end, envhub's
helper (the sh script) trades such a token at envhub's API, which reviews it
with the cluster, for the GitHub App's token for the project's repository.
"""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from sqlmodel import Session, select

from envhub.api.app import create_api
from envhub.config import Settings
from envhub.domain.git_credentials import ENDPOINT
from envhub.domain.kube import git_credentials as git
from envhub.domain.kube import namespace_for
from envhub.domain.kube.names import WORKLOAD_ACCOUNT
from envhub.domain.kube.workspace import WORKSPACE, WorkspaceSettings
from envhub.domain.specs import EnvironmentTarget
from envhub.models import AuditEvent, Project
from envhub.runtime.kubernetes import KubernetesRuntime, api_client
from envhub.services.github import connect_github
from tests.kube.helpers import Kube
from tests.support.github_stub import github_stub
from tests.support.repos import WorkRepo
from tests.support.runtime import RecordingProgress, make_target
from tests.support.servers import serve_asgi
from tests.support.world import World
from tests.terminal.harness import make_environment

pytestmark = pytest.mark.kube

MakeEnv = Callable[..., EnvironmentTarget]
WEB = git.EnvhubWeb(
    url="http://envhub-web.envhub.svc:80",
    namespace="envhub",
    pods={"app.kubernetes.io/name": "envhub", "app.kubernetes.io/component": "web"},
    port="http",
)


def mint(kube: Kube, namespace: str, account: str, audiences: list[str], pod: Any = None) -> str:
    """A token from the TokenRequest API, as the kubelet asks for a projected one (bound to ``pod``)."""
    bound = None
    if pod is not None:
        bound = client.V1BoundObjectReference(
            api_version="v1", kind="Pod", name=pod["metadata"]["name"], uid=pod["metadata"]["uid"]
        )
    body = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=audiences, expiration_seconds=600, bound_object_ref=bound)
    )
    response = kube.core.create_namespaced_service_account_token(account, namespace, body)
    return str(response.status.token)


def test_a_workspace_pods_token_for_envhub_names_its_environment_and_no_other_token_does(
    running_cluster: Any, kube: Kube, make_env: MakeEnv, tmp_path: Path
) -> None:
    runtime = KubernetesRuntime(
        api_client(str(running_cluster.kubeconfig)),
        ready_timeout=30.0,
        allow_local_repos=True,
        workspace=WorkspaceSettings(envhub=WEB),
    )
    repo = WorkRepo(tmp_path / "repo")
    folder = tmp_path / "workspace"
    repo.commit(
        "shop", {".devcontainer.json": f'{{"image": "debian:bookworm", "workspaceFolder": "{folder}"}}'}
    )
    target = dataclasses.replace(
        make_env(name="dev", repo_url=f"file://{repo.path}"), git_origin="https://github.com"
    )
    runtime.apply(target, progress=RecordingProgress())
    namespace = namespace_for(target)

    # The apiserver took the pod's projected token, the helper's ConfigMap and the policy.
    deployment = kube.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{WORKSPACE}")
    assert deployment is not None
    pod_spec = deployment["spec"]["template"]["spec"]
    [volume] = [v for v in pod_spec["volumes"] if v["name"] == git.VOLUME]
    assert volume["projected"]["sources"][0]["serviceAccountToken"] == {
        "audience": "envhub",
        "expirationSeconds": 600,
        "path": "token",
    }
    env = {e["name"]: e.get("value") for e in pod_spec["containers"][0]["env"]}
    assert env["GIT_CONFIG_KEY_1"] == "credential.https://github.com.helper"
    assert env["GIT_CONFIG_VALUE_1"] == f"{git.MOUNT}/{git.HELPER_NAME} {WEB.url}{ENDPOINT}"
    config_map = kube.get(f"/api/v1/namespaces/{namespace}/configmaps/{git.HELPER_CONFIG_MAP}")
    assert config_map is not None
    assert config_map["data"][git.HELPER_NAME] == git.HELPER_SCRIPT
    policy = kube.get(
        f"/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies/{git.POLICY_ALLOW_ENVHUB}"
    )
    assert policy is not None
    assert policy["spec"]["egress"][0]["ports"] == [{"protocol": "TCP", "port": "http"}]

    # The kubelet's token for the workspace pod: the runtime's TokenReview maps it to the environment.
    pods = kube.core.list_namespaced_pod(namespace, label_selector=f"app.kubernetes.io/name={WORKSPACE}")
    [pod] = [p.to_dict() for p in pods.items]
    pod["metadata"] = {"name": pod["metadata"]["name"], "uid": pod["metadata"]["uid"]}
    assert runtime.environment_of_token(mint(kube, namespace, WORKLOAD_ACCOUNT, ["envhub"], pod)) == target.id
    assert runtime.environment_of_token(mint(kube, namespace, WORKLOAD_ACCOUNT, ["envhub"])) == target.id

    # Not for envhub (the API server's own audience), not the workload account, not a signed token.
    assert runtime.environment_of_token(mint(kube, namespace, WORKLOAD_ACCOUNT, [])) is None
    assert runtime.environment_of_token(mint(kube, namespace, WORKLOAD_ACCOUNT, ["vault"])) is None
    kube.cluster.wait_for_service_account(namespace)
    assert runtime.environment_of_token(mint(kube, namespace, "default", ["envhub"])) is None
    assert runtime.environment_of_token("not-a-token") is None
    good = mint(kube, namespace, WORKLOAD_ACCOUNT, ["envhub"])
    header, claims, signature = good.split(".")
    forged = f"{header}.{claims}.{signature[:-8]}{'A' * 8 if not signature.endswith('A' * 8) else 'B' * 8}"
    assert runtime.environment_of_token(forged) is None  # shaped right, signed wrong
    assert (
        runtime.environment_of_token(running_cluster.token) is None
    )  # the admin's, of another authenticator

    # Another environment's token names that one; a namespace shaped like one but not envhub's, none.
    other = make_env(name="other")
    runtime.prepare(other, progress=RecordingProgress())
    other_token = mint(kube, namespace_for(other), WORKLOAD_ACCOUNT, ["envhub"])
    assert runtime.environment_of_token(other_token) == other.id
    impostor = f"envhub-acme-shop-fake-{target.id}"
    kube.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=impostor)))
    try:
        kube.core.create_namespaced_service_account(
            impostor, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=WORKLOAD_ACCOUNT))
        )
        assert runtime.environment_of_token(mint(kube, impostor, WORKLOAD_ACCOUNT, ["envhub"])) is None
    finally:
        kube.delete_namespace(impostor)


def test_envhubs_helper_trades_the_pods_token_for_the_repositorys_through_a_real_token_review(
    kube_settings: Settings, session: Session, world: World, project: Project, kube: Kube, tmp_path: Path
) -> None:
    environment = make_environment(session, world, project, kube_settings)
    target = make_target(environment.id or 0, name=environment.name)  # acme/shop, as in the database
    runtime = KubernetesRuntime(api_client(str(kube.cluster.kubeconfig)), ready_timeout=30.0)
    runtime.prepare(target, progress=RecordingProgress())  # the namespace and its workload account
    token = mint(kube, namespace_for(target), WORKLOAD_ACCOUNT, [git.AUDIENCE])
    # The pod's projected volume, as the kubelet fills it.
    volume = tmp_path / "git"
    volume.mkdir()
    helper = volume / git.HELPER_NAME
    helper.write_text(git.HELPER_SCRIPT)
    helper.chmod(0o555)
    (volume / git.TOKEN_FILE).write_text(token)

    with github_stub() as stub, serve_asgi(create_api()) as port:
        stub.add_repo("acme/widgets", private=True)
        private_key = stub.add_app(42)
        stub.install(42, 7, "acme/widgets", "acme/other")
        connect_github(
            session=session, actor=world.admin, project_id=project.id or 0, repository="acme/widgets",
            auth="app", api_url=stub.api_url, app_id=42, installation_id=7, private_key=private_key,
        )  # fmt: skip
        session.commit()
        host = stub.origin.removeprefix("http://")

        def ask(token_file: str = "") -> subprocess.CompletedProcess[str]:
            if token_file:
                (volume / git.TOKEN_FILE).write_text(token_file)
            command = f"{helper} http://localhost:{port}{ENDPOINT} get"
            request = f"protocol=http\nhost={host}\npath=acme/widgets.git\n\n"
            return subprocess.run(
                ["sh", "-c", command], input=request, capture_output=True, text=True, timeout=60
            )

        done = ask()
        assert done.returncode == 0, done.stderr
        answer = dict(line.split("=", 1) for line in done.stdout.splitlines())
        grant = stub.grants[answer["password"]]
        assert grant.repositories == {"acme/widgets"}
        assert grant.permissions == {"contents": "write", "pull_requests": "write"}
        # A token for the API server's own audience is refused, and GitHub is not asked.
        minted = len(stub.grants)
        refused = ask(mint(kube, namespace_for(target), WORKLOAD_ACCOUNT, []))
        assert (refused.returncode, refused.stdout) == (1, "")
        assert "unauthenticated" in refused.stderr
        assert len(stub.grants) == minted

    session.expire_all()
    [event] = session.exec(select(AuditEvent).where(AuditEvent.action == "environment.git_credentials")).all()
    assert (event.outcome, event.target_id, event.details["repository"]) == (
        "success",
        environment.id,
        "acme/widgets",
    )
