"""A development environment's devcontainer.json on the real apiserver and the test kubelet.

The worker reads the file from the project's repository (a real git repository
on disk), the runtime applies the workspace (claim, Service, Deployment with its
clone init container), the test kubelet runs the clone and the dev container's
command as local processes, and the lifecycle commands run through ``pods/exec``
with their output in the provisioning steps (at a start, and again at a wake from
sleep). What the runtime did not honour is in the summary the environment records.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from sqlalchemy.engine import Engine
from sqlmodel import Session

from envhub.config import Settings, override_settings
from envhub.domain.kube import namespace_for
from envhub.domain.kube.builds import BuilderSettings
from envhub.domain.kube.workspace import CREATED_ANNOTATION, STARTED_ANNOTATION, WORKSPACE, volume_claim
from envhub.domain.phases import Phase
from envhub.domain.public import port_host
from envhub.domain.specs import EnvironmentTarget
from envhub.errors import ImageBuildFailed
from envhub.jobs.environments import converge_environment
from envhub.models import Environment, JobRun
from envhub.runtime.kubernetes import KubernetesRuntime, api_client
from envhub.services import ports
from envhub.services.environment_views import environment_detail
from envhub.services.environments import create_environment
from envhub.services.projects import create_project
from envhub.urls.ingress import IngressUrls
from tests.conftest import build_settings
from tests.kube.helpers import Kube
from tests.kube.test_ingress import DOMAIN, ingress_of, with_ingress
from tests.support.cloudflare_stub import cloudflare_stub
from tests.support.db import fetch, fetch_all
from tests.support.fakes import FakeQueue
from tests.support.net import free_port
from tests.support.repos import WorkRepo
from tests.support.runtime import RecordingProgress
from tests.support.waiting import wait_for
from tests.support.world import World

pytestmark = pytest.mark.kube

MakeEnv = Callable[..., EnvironmentTarget]

# Shaped like the published templates (an image of ghcr.io/devcontainers, a feature, forwarded
# ports with labels, postCreateCommand), with a workspace folder the test kubelet can write.
DEVCONTAINER = """
// The shop's dev container.
{{
  "name": "Shop",
  "image": "ghcr.io/devcontainers/python:1-3.12-bookworm",
  "features": {{ "ghcr.io/devcontainers/features/github-cli:1": {{}} }},
  "workspaceFolder": "{folder}",
  "containerEnv": {{ "SHOP_MODE": "dev" }},
  "remoteEnv": {{ "GREETING": "hello from remoteEnv" }},
  "forwardPorts": [{port}, {debug}],
  "portsAttributes": {{ "{port}": {{ "label": "Storefront" }}, "{debug}": {{ "label": "Debugger" }} }},
  "mounts": ["source=/var/run/docker.sock,target=/var/run/docker.sock,type=bind"],
  "postCreateCommand": "echo created as $SHOP_MODE with $GREETING; cat app.txt",
  "postStartCommand": ["sh", "-c", "echo started in $(pwd)"],
  "remoteUser": "vscode",
}}
"""


@pytest.fixture(scope="module")
def dev_runtime(running_cluster: Any) -> KubernetesRuntime:
    """The runtime as a worker runs it, allowed to fetch a repository on this machine."""
    return KubernetesRuntime(
        api_client(str(running_cluster.kubeconfig)),
        ready_timeout=30.0,
        allow_local_repos=True,
        lifecycle_timeout=30,
    )


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[tuple[WorkRepo, Path, int]]:
    repo = WorkRepo(tmp_path / "repo")
    folder = tmp_path / "workspaces" / "shop"
    port, debug = free_port(), free_port()
    repo.commit(
        "shop",
        {
            "app.txt": "the shop's code\n",
            ".devcontainer/devcontainer.json": DEVCONTAINER.format(folder=folder, port=port, debug=debug),
        },
    )
    return repo, folder, port


def ingress_hosts(kube: Kube, namespace: str) -> dict[str, tuple[str, int]]:
    """Each host of the environment's Ingress -> the Service and port it goes to."""
    ingress = ingress_of(kube, namespace)
    assert ingress is not None
    assert ingress["spec"]["tls"] == [{"hosts": [rule["host"] for rule in ingress["spec"]["rules"]]}]
    found = {}
    for rule in ingress["spec"]["rules"]:
        service = rule["http"]["paths"][0]["backend"]["service"]
        found[rule["host"]] = (service["name"], service["port"]["number"])
    return found


def steps(progress: RecordingProgress, key: str) -> list[tuple[str, str]]:
    return [(event, detail) for event, k, detail in progress.events if k == key]


def test_the_workspace_is_applied_and_its_commands_run_through_exec(
    dev_runtime: KubernetesRuntime, kube: Kube, make_env: MakeEnv, shop: tuple[WorkRepo, Path, int]
) -> None:
    repo, folder, port = shop
    commit = repo.git("rev-parse", "HEAD")
    target = with_ingress(make_env(name="dev", repo_url=f"file://{repo.path}"), IngressUrls(domain=DOMAIN))
    progress = RecordingProgress()
    status = dev_runtime.apply(target, progress=progress)
    namespace = namespace_for(target)

    # The objects, as the cluster has them.
    deployment = kube.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{WORKSPACE}")
    assert deployment is not None
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["image"] == "ghcr.io/devcontainers/python:1-3.12-bookworm"
    assert container["workingDir"] == str(folder)
    assert {"name": "SHOP_MODE", "value": "dev"} in container["env"]
    assert {"name": "PORT", "value": str(port)} in container["env"]
    [clone] = pod["initContainers"]
    assert {"name": "COMMIT", "value": commit} in clone["env"]
    claim = kube.get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{WORKSPACE}")
    assert claim is not None
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    service = kube.get(f"/api/v1/namespaces/{namespace}/services/{WORKSPACE}")
    assert service is not None
    assert next(p["port"] for p in service["spec"]["ports"]) == port
    assert status.endpoint is not None
    assert status.endpoint.port == port
    # The init container cloned the commit into the workspace (the test kubelet runs it here).
    assert (folder / "app.txt").read_text() == "the shop's code\n"

    # The lifecycle commands ran in the pod, with containerEnv and remoteEnv, their output in the steps.
    [(begin, command), (finish, output)] = steps(progress, "post_create")
    assert (begin, finish) == ("begin", "finish")
    assert command.startswith("echo created")
    assert output == "created as dev with hello from remoteEnv\nthe shop's code"
    assert steps(progress, "post_start")[-1] == ("finish", f"started in {folder}")
    assert steps(progress, "devcontainer")[-1][0] == "finish"

    # What was not honoured is in the summary the environment records.
    summary = json.loads(status.details["devcontainer"])
    refused = {entry["key"] for entry in summary["unsupported"]}
    assert {"remoteUser", "mounts[0]", "features.ghcr.io/devcontainers/features/github-cli:1"} <= refused
    assert summary["published_port"] == port
    assert summary["ports_relayed"] is True
    assert [p["label"] for p in summary["ports"]] == ["Storefront", "Debugger"]

    # postCreateCommand is remembered with the workspace: a redeploy of the commit does not run it again.
    claim = kube.get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{WORKSPACE}")
    assert claim is not None
    assert claim["metadata"]["annotations"][CREATED_ANNOTATION] == commit
    assert claim["metadata"]["annotations"][STARTED_ANNOTATION]
    again = RecordingProgress()
    dev_runtime.apply(target, progress=again)
    assert again.outcome("post_create") == "skip"
    assert again.outcome("post_start") == "skip"

    # A wake from sleep is a new pod: postStartCommand runs in it, as at a start; postCreateCommand not.
    slept_in = claim["metadata"]["annotations"][STARTED_ANNOTATION]
    dev_runtime.sleep(target.id, progress=RecordingProgress())
    # Asleep is without pods (the controller and the test kubelet take a moment to get there).
    wait_for(
        lambda: not kube.items(f"/api/v1/namespaces/{namespace}/pods"),
        timeout=60,
        what="the sleeping workspace's pod to go",
    )
    woken = RecordingProgress()
    assert dev_runtime.wake(target, progress=woken).endpoint == status.endpoint
    assert steps(woken, "post_create") == [("skip", f"already ran in this workspace for {commit[:12]}")]
    assert steps(woken, "post_start")[-1] == ("finish", f"started in {folder}")
    claim = kube.get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{WORKSPACE}")
    assert claim is not None
    assert claim["metadata"]["annotations"][STARTED_ANNOTATION] not in ("", slept_in)

    # A terminal in the workspace has remoteEnv; each forwarded port is reachable on its own.
    session = dev_runtime.exec(target.id, ["/bin/sh", "-c", 'echo "$GREETING in $(pwd)"'], tty=False)
    try:
        out = b""
        while chunk := session.read(timeout=30):
            out += chunk
    finally:
        session.close()
    assert out.decode().strip() == f"hello from remoteEnv in {folder}"
    debug = summary["ports"][1]["port"]
    found = dev_runtime.port_endpoint(target.id, debug)
    assert found is not None
    assert (found.host, found.port) == (f"{WORKSPACE}.{namespace}.svc", debug)
    assert dev_runtime.port_endpoint(target.id, 1) is None

    # The Ingress the cluster accepted: the app's host to the workspace, the other port on a host of its own.
    assert target.ingress is not None
    assert ingress_hosts(kube, namespace) == {
        target.ingress.host: (WORKSPACE, port),
        port_host(target.ingress.host, debug): (WORKSPACE, debug),
    }


def test_a_dropped_devcontainer_is_pruned_with_its_claims(
    dev_runtime: KubernetesRuntime, kube: Kube, make_env: MakeEnv, shop: tuple[WorkRepo, Path, int]
) -> None:
    repo, _folder, _port = shop
    config = repo.path / ".devcontainer" / "devcontainer.json"
    text = config.read_text().replace(
        '"postCreateCommand"',
        '"mounts": ["source=shop-cache,target=/cache,type=volume"], "postCreateCommand"',
    )
    text = text.replace(
        '  "mounts": ["source=/var/run/docker.sock,target=/var/run/docker.sock,type=bind"],\n', ""
    )
    repo.commit("a cache volume", {".devcontainer/devcontainer.json": text})
    target = with_ingress(make_env(name="dev", repo_url=f"file://{repo.path}"), IngressUrls(domain=DOMAIN))
    dev_runtime.apply(target, progress=RecordingProgress())
    namespace = namespace_for(target)
    assert len(ingress_hosts(kube, namespace)) == 2  # the app's host and the debugger's
    cache = volume_claim("shop-cache")
    assert kube.get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{cache}") is not None

    repo.git("rm", "--quiet", "-r", ".devcontainer")
    repo.commit("no dev container")
    progress = RecordingProgress()
    dev_runtime.apply(dataclasses.replace(target, generation=2), progress=progress)
    assert steps(progress, "devcontainer")[-1] == ("skip", "the repository has no devcontainer.json")
    for path in (
        f"persistentvolumeclaims/{WORKSPACE}",
        f"persistentvolumeclaims/{cache}",
        f"services/{WORKSPACE}",
    ):
        left = kube.get(f"/api/v1/namespaces/{namespace}/{path}")
        assert left is None or left["metadata"].get("deletionTimestamp"), path
    assert kube.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{WORKSPACE}") is None
    # Nothing left to route (no container services, no workspace): the Ingress goes too.
    assert ingress_of(kube, namespace) is None


def test_the_job_records_what_was_not_honoured_and_publishes_each_port_s_url(
    session: Session, world: World, db: Engine, kube_settings: Settings, shop: tuple[WorkRepo, Path, int]
) -> None:
    """The converge job, in-process, as a worker runs it, publishing through the Cloudflare stub: steps,
    summary and view as every face shows them, the tunnel's rules and the zone's records."""
    repo, _folder, port = shop
    with cloudflare_stub() as stub:
        settings = build_settings(
            **{
                **kube_settings.model_dump(),
                "allow_local_repos": True,
                "url_provider": "cloudflare",
                "cloudflare_api_url": stub.api_url,
                "cloudflare_api_token": stub.token,
                "cloudflare_account_id": stub.account_id,
                "cloudflare_zone": "example.com",
            }
        )
        with override_settings(settings):
            ports.reset()
            project = create_project(
                session=session,
                actor=world.owner,
                team_id=world.acme,
                name="shop",
                repo_url=f"file://{repo.path}",
            )
            assert project.id is not None
            queue = FakeQueue()
            env = create_environment(
                session=session, actor=world.member, queue=queue, project_id=project.id, name="pr-3"
            )
            assert env.id is not None
            assert converge_environment(*queue.jobs[-1].args) == "ready"  # type: ignore[arg-type]
        ports.reset()
        stored = fetch(db, Environment, env.id)
        assert stored is not None
        assert stored.phase is Phase.ready
        [run] = fetch_all(db, JobRun)
        done = {step["key"]: step for step in run.steps}
        assert done["post_create"]["status"] == "done"
        assert done["post_create"]["detail"].endswith("the shop's code")
        assert done["devcontainer"]["title"] == "Read devcontainer.json"
        detail = environment_detail(stored)
        refused = {entry["key"] for entry in detail["devcontainer_unsupported"]}
        assert {"remoteUser", "mounts[0]", "features.ghcr.io/devcontainers/features/github-cli:1"} <= refused
        urls = {entry["port"]: entry["url"] for entry in detail["devcontainer_ports"]}
        assert urls[port] == stored.public_url
        [debug] = [number for number in urls if number != port]
        assert stored.public_url is not None
        host = stored.public_url.removeprefix("https://").rstrip("/")
        assert urls[debug] == f"https://{port_host(host, debug)}/"
        # The workspace serves the app: the tunnel routes the environment's host to it, and the
        # debugger's host to its port, each with its record.
        namespace = f"envhub-acme-shop-pr-3-{env.id}"
        [tunnel] = stub.tunnels
        assert stub.rules(tunnel)[:2] == [
            {"hostname": host, "service": f"http://{WORKSPACE}.{namespace}.svc:{port}"},
            {"hostname": port_host(host, debug), "service": f"http://{WORKSPACE}.{namespace}.svc:{debug}"},
        ]
        assert sorted(r["comment"] for r in stub.records.values()) == [
            f"envhub environment {env.id}: pr-3 of acme/shop",
            f"envhub environment {env.id}: pr-3 of acme/shop, port {debug} (Debugger)",
        ]


BUILT = """
{
  "name": "Shop (Dockerfile)",
  "build": { "dockerfile": "Dockerfile", "args": { "VARIANT": "3.12" } },
  "workspaceFolder": "FOLDER",
  "postCreateCommand": "echo built",
}
"""


def test_a_dockerfile_is_built_by_a_buildkit_job_whose_status_the_cluster_reports(
    running_cluster: Any, kube: Kube, make_env: MakeEnv, tmp_path: Path
) -> None:
    """The Job is applied to the apiserver; no BuildKit runs here (the test kubelet cannot pull its
    image), so the test writes the Job's status as the Job controller would."""
    builds = "envhub-builds-test"
    kube.core.create_namespace({"metadata": {"name": builds}})
    runtime = KubernetesRuntime(
        api_client(str(running_cluster.kubeconfig)),
        ready_timeout=30.0,
        allow_local_repos=True,
        builder=BuilderSettings(
            namespace=builds,
            registry="registry.example.test/envhub",
            image="buildkit-does-not-exist:rootless",
        ),
    )
    repo = WorkRepo(tmp_path / "repo")
    folder = tmp_path / "workspace"
    repo.commit(
        "dockerfile",
        {
            ".devcontainer/devcontainer.json": BUILT.replace("FOLDER", str(folder)),
            ".devcontainer/Dockerfile": "FROM ghcr.io/devcontainers/base:bookworm\n",
        },
    )
    target = make_env(name="dev", repo_url=f"file://{repo.path}")
    batch = client.BatchV1Api(kube.api)
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        progress = RecordingProgress()
        applying = pool.submit(runtime.apply, target, progress=progress)
        job = wait_for(
            lambda: next(iter(batch.list_namespaced_job(builds).items), None),
            timeout=30,
            what="the build Job",
        )
        [container] = job.spec.template.spec.containers
        assert container.image == "buildkit-does-not-exist:rootless"
        assert f"context=file://{repo.path}#{repo.git('rev-parse', 'HEAD')}:.devcontainer" in container.args
        image = job.metadata.annotations["envhub.dev/image"]
        first = job.metadata.name
        assert container.args[-1] == f"type=image,name={image},push=true"
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        complete = {"type": "Complete", "status": "True", "lastProbeTime": now, "lastTransitionTime": now}
        status = {"conditions": [complete], "succeeded": 1, "startTime": now, "completionTime": now}
        batch.patch_namespaced_job_status(job.metadata.name, builds, {"status": status})
        applying.result(timeout=60)
        assert progress.outcome("build") == "finish"
        deployment = kube.get(f"/apis/apps/v1/namespaces/{namespace_for(target)}/deployments/{WORKSPACE}")
        assert deployment is not None
        assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == image

        # Another commit of the Dockerfile is another build; a failed one fails the deploy, naming its Job.
        repo.commit("v2", {".devcontainer/Dockerfile": "FROM ghcr.io/devcontainers/base:trixie\n"})
        failing = pool.submit(runtime.apply, dataclasses.replace(target, generation=2), progress=progress)
        second = wait_for(
            lambda: next(
                (j for j in batch.list_namespaced_job(builds).items if j.metadata.name != first), None
            ),
            timeout=30,
            what="the second build Job",
        )
        failed = {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "exit 1",
                  "lastProbeTime": now, "lastTransitionTime": now}  # fmt: skip
        batch.patch_namespaced_job_status(second.metadata.name, builds, {"status": {"conditions": [failed]}})
        with pytest.raises(ImageBuildFailed) as refused:
            failing.result(timeout=60)
        assert refused.value.details["job"] == second.metadata.name
        assert "BackoffLimitExceeded" in refused.value.message

        # A redeploy of the same build tries again: the failed Job is replaced by a new one.
        retry = pool.submit(runtime.apply, dataclasses.replace(target, generation=3), progress=progress)

        def replaced() -> Any:
            found = [
                j for j in batch.list_namespaced_job(builds).items if j.metadata.name == second.metadata.name
            ]
            return found[0] if found and found[0].metadata.uid != second.metadata.uid else None

        third = wait_for(replaced, timeout=30, what="the failed build Job to be replaced")
        batch.patch_namespaced_job_status(third.metadata.name, builds, {"status": status})
        retry.result(timeout=60)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        kube.delete_namespace(builds)
