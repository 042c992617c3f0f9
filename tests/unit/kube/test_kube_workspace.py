"""A development environment's devcontainer.json as the Kubernetes runtime renders it (kube/workspace.py)."""

from __future__ import annotations

import dataclasses
import shlex
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from envhub.domain import browser
from envhub.domain.devcontainer import Workspace
from envhub.domain.kube import render_environment
from envhub.domain.kube.browser import CONTAINER, IMAGE_USER, SHARED_PATH, VOLUME, BrowserSidecar
from envhub.domain.kube.builds import BuilderSettings, plan_build
from envhub.domain.kube.errors import ManifestRejected
from envhub.domain.kube.inventory import PUBLIC_ANNOTATION, SERVICES_ANNOTATION
from envhub.domain.kube.pod_guard import workload_problems
from envhub.domain.kube.workspace import (
    WORKSPACE,
    WorkspaceSettings,
    default_folder,
    kubernetes_config,
    volume_claim,
)
from envhub.domain.kube.workspace_record import kept_workspace, pinned_commit, read_remote_env
from envhub.domain.kube.workspace_shell import clone_script, with_remote_env
from envhub.domain.specs import EnvironmentKind
from envhub.errors import DevcontainerBuildUnavailable, DevcontainerInvalid
from tests.support.runtime import make_target

COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPO = "https://github.com/acme/shop.git"

# Shaped like the published Python template (an image of ghcr.io/devcontainers, features,
# forwarded ports, postCreateCommand), with what a team adds: labels, variables, a cache volume.
PYTHON_TEMPLATE = """
// For format details, see https://aka.ms/devcontainer.json.
{
  "name": "Shop (Python 3)",
  "image": "ghcr.io/devcontainers/python:1-3.12-bookworm",
  "features": {
    "ghcr.io/devcontainers/features/git:1": {},
    "ghcr.io/devcontainers/features/node:1": { "version": "lts" },
  },
  "containerEnv": { "SHOP_MODE": "dev", "PORT": "1" },
  "remoteEnv": {
    "PATH": "${containerEnv:PATH}:${containerWorkspaceFolder}/.venv/bin",
    "GREETING": "it's $HOME; `not run`",
  },
  "forwardPorts": [8000, 5678],
  "portsAttributes": {
    "8000": { "label": "Storefront", "onAutoForward": "openBrowser" },
    "5678": { "label": "Debugger" },
  },
  "mounts": [
    "source=shop-pip-cache,target=/home/vscode/.cache/pip,type=volume",
    "source=/var/run/docker.sock,target=/var/run/docker.sock,type=bind",
  ],
  "postCreateCommand": "pip3 install --user -r requirements.txt",
  "postStartCommand": ["python3", "-m", "shop.migrate"],
  "remoteUser": "vscode",
  "customizations": { "vscode": { "extensions": ["ms-python.python"] } },
}
"""


def config(text: str = PYTHON_TEMPLATE, **kwargs: Any) -> Any:
    return kubernetes_config(
        text, path=".devcontainer/devcontainer.json", repo_url=REPO, local_env={}, **kwargs
    )


def target(text: str = PYTHON_TEMPLATE, **spec: Any) -> Any:
    made = make_target(7, repo_url=REPO, **spec)
    return dataclasses.replace(made, workspace=Workspace(config=config(text), commit=COMMIT))


def by_kind(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def test_what_kubernetes_honours_and_lists_the_rest() -> None:
    found = config()
    assert found.image == "ghcr.io/devcontainers/python:1-3.12-bookworm"
    assert found.workspace_folder == "/workspaces/shop"
    assert [p.port for p in found.ports] == [8000, 5678]
    assert found.published_port == 8000
    assert found.ports_relayed
    # The image's PATH is left to the container's shell; the folder is filled in.
    assert found.remote_env["PATH"] == "${PATH}:/workspaces/shop/.venv/bin"
    refused = {entry.key: entry.reason for entry in found.unsupported}
    assert "user name" in refused["remoteUser"]
    assert found.remote_user == ""
    assert "installs no features" in refused["features.ghcr.io/devcontainers/features/git:1"]
    assert "documented features" in refused["features.ghcr.io/devcontainers/features/node:1"]
    assert "bind" in refused["mounts[1]"]
    assert refused["containerEnv.PORT"] == "envhub sets this variable itself"
    assert found.features == ()
    assert found.summary()["unsupported"]
    assert "customizations" not in refused


def test_the_workspace_objects() -> None:
    objects = render_environment(target(), namespace="envhub-shop-dev-7")
    kinds = [(o["kind"], o["metadata"]["name"]) for o in objects]
    claim = by_kind(objects, "PersistentVolumeClaim", WORKSPACE)
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert "storageClassName" not in claim["spec"]
    cache = volume_claim("shop-pip-cache")
    assert ("PersistentVolumeClaim", cache) in kinds
    service = by_kind(objects, "Service", WORKSPACE)
    # The app (the project's command) is served on the first forwarded port; every port is the Service's.
    assert [(p["port"], p["protocol"]) for p in service["spec"]["ports"]] == [(8000, "TCP"), (5678, "TCP")]
    # Claims and Services before the Deployment that uses them.
    assert kinds.index(("PersistentVolumeClaim", WORKSPACE)) < kinds.index(("Deployment", WORKSPACE))
    deployment = by_kind(objects, "Deployment", WORKSPACE)
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["image"] == "ghcr.io/devcontainers/python:1-3.12-bookworm"
    assert container["workingDir"] == "/workspaces/shop"
    assert container["command"] == ["/bin/sh", "-c", "python3 -m http.server $PORT"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["SHOP_MODE"] == "dev"
    assert env["PORT"] == "8000"
    assert env["ENVHUB_ENVIRONMENT"] == "dev"
    assert "PATH" not in env
    assert "GREETING" not in env
    assert {m["mountPath"]: m["name"] for m in container["volumeMounts"]} == {
        "/workspaces/shop": WORKSPACE,
        "/home/vscode/.cache/pip": cache,
    }
    assert container["securityContext"] == {"allowPrivilegeEscalation": False}
    [clone] = pod["initContainers"]
    assert clone["image"] == WorkspaceSettings().git_image
    clone_env = {e["name"]: e.get("value") for e in clone["env"]}
    assert clone_env["REPO"] == REPO
    assert clone_env["COMMIT"] == COMMIT
    assert clone_env["DEST"] == "/workspaces/shop"
    assert "GIT_TOKEN" not in clone_env
    assert clone["volumeMounts"] == [{"name": WORKSPACE, "mountPath": "/workspaces/shop"}]
    assert {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]} == {
        WORKSPACE: WORKSPACE,
        cache: cache,
    }
    namespace = objects[0]
    annotations = namespace["metadata"]["annotations"]
    assert annotations[PUBLIC_ANNOTATION] == f"{WORKSPACE}:8000"
    assert annotations[SERVICES_ANNOTATION] == WORKSPACE
    assert read_remote_env(annotations)["GREETING"] == "it's $HOME; `not run`"


def test_beside_container_services_the_workspace_only_stays_up() -> None:
    web = {"name": "web", "image": "shop:1", "ports": [8080], "public": True}
    objects = render_environment(
        target(services=[web]),
        namespace="envhub-shop-dev-7",
        workspace=WorkspaceSettings(storage_class="fast", size="20Gi", git_image="registry.test/git:2"),
    )
    container = by_kind(objects, "Deployment", WORKSPACE)["spec"]["template"]["spec"]["containers"][0]
    assert "trap" in container["command"][2]
    assert "readinessProbe" not in container
    assert "PORT" not in {e["name"] for e in container["env"]}
    claim = by_kind(objects, "PersistentVolumeClaim", WORKSPACE)
    assert claim["spec"]["storageClassName"] == "fast"
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    annotations = objects[0]["metadata"]["annotations"]
    assert annotations[PUBLIC_ANNOTATION] == "web:8080"
    assert annotations[SERVICES_ANNOTATION] == f"{WORKSPACE},web"


def test_the_git_token_reaches_the_clone_only() -> None:
    made = dataclasses.replace(target(), secrets={"GIT_TOKEN": "t0ken", "API_KEY": "k"}, secrets_digest="d")
    pod = by_kind(render_environment(made, namespace="envhub-shop-dev-7"), "Deployment", WORKSPACE)
    spec = pod["spec"]["template"]["spec"]
    [clone] = spec["initContainers"]
    [token] = [e for e in clone["env"] if e["name"] == "GIT_TOKEN"]
    assert token["valueFrom"]["secretKeyRef"]["key"] == "GIT_TOKEN"
    assert "value" not in token
    assert "t0ken" not in str(pod)
    # The dev container gets the project's secrets, but not the fetch token.
    [container] = spec["containers"]
    assert container["envFrom"] == [{"secretRef": {"name": "envhub-secrets"}}]
    assert {"name": "GIT_TOKEN", "value": ""} in container["env"]


def test_a_numeric_remote_user_is_the_container_user() -> None:
    text = PYTHON_TEMPLATE.replace('"remoteUser": "vscode"', '"remoteUser": "1000"')
    pod = by_kind(render_environment(target(text), namespace="envhub-shop-dev-7"), "Deployment", WORKSPACE)
    spec = pod["spec"]["template"]["spec"]
    assert spec["containers"][0]["securityContext"]["runAsUser"] == 1000
    assert spec["initContainers"][0]["securityContext"]["runAsUser"] == 1000
    assert spec["securityContext"]["fsGroup"] == 1000


def test_a_build_without_an_image_builder_is_refused() -> None:
    text = '{"build": {"dockerfile": "Dockerfile"}, "forwardPorts": [3000]}'
    with pytest.raises(DevcontainerBuildUnavailable) as refused:
        config(text)
    assert refused.value.code == "devcontainer_build_unavailable"
    assert "image builder" in refused.value.message
    # With an image too, the image is used and the build listed as not honoured.
    both = config('{"image": "ghcr.io/devcontainers/base:bookworm", "build": {"dockerfile": "Dockerfile"}}')
    assert both.image.endswith("base:bookworm")
    assert [u.key for u in both.unsupported] == ["build"]
    with pytest.raises(DevcontainerInvalid):
        config('{"forwardPorts": [3000]}')


def test_the_guard_still_applies_to_the_workspace() -> None:
    # The repository writes the workspace's values: one naming envhub's backup store is refused.
    text = '{"image": "ghcr.io/devcontainers/base:bookworm", "containerEnv": {"S": "envhub-backup-store"}}'
    made = dataclasses.replace(target(), workspace=Workspace(config=config(text), commit=COMMIT))
    with pytest.raises(ManifestRejected) as refused:
        render_environment(made, namespace="envhub-shop-dev-7")
    assert refused.value.details["object"] == f"Deployment/{WORKSPACE}"
    # A workspace named like a container service of the spec is refused, not merged.
    web = {"name": WORKSPACE, "image": "shop:1", "ports": [8080]}
    with pytest.raises(ManifestRejected):
        render_environment(target(services=[web]), namespace="envhub-shop-dev-7")


def test_a_deployment_environment_has_no_workspace_of_its_own() -> None:
    made = dataclasses.replace(target(), kind=EnvironmentKind.deployment, workspace=None)
    assert all(o["metadata"]["name"] != WORKSPACE for o in render_environment(made, namespace="envhub-x-7"))


def test_default_folder_and_claim_names() -> None:
    assert default_folder("https://github.com/acme/shop.git") == "/workspaces/shop"
    assert default_folder("git@github.com:acme/Shop.App") == "/workspaces/Shop.App"
    assert default_folder("file:///srv/git/") == "/workspaces/git"
    assert volume_claim("Shop_Cache.v2").startswith("volume-shop-cache-v2-")
    assert volume_claim("a") != volume_claim("A")


def test_remote_env_is_quoted_for_the_shell(tmp_path: Path) -> None:
    env = {"PATH": "${PATH}:/opt/x", "GREETING": "it's $HOME; `touch pwned`"}
    argv = with_remote_env(env, ["/bin/sh", "-c", 'printf "%s|%s" "$PATH" "$GREETING"'])
    done = subprocess.run(argv, cwd=tmp_path, env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    assert done.stdout == "/usr/bin:/bin:/opt/x|it's $HOME; `touch pwned`"
    assert not (tmp_path / "pwned").exists()
    assert with_remote_env({}, ["ls"]) == ["ls"]


def test_the_clone_script_clones_then_keeps_local_work(tmp_path: Path) -> None:
    origin = tmp_path / "origin"
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q", str(origin)], check=True)
    (origin / "app.txt").write_text("one\n")
    subprocess.run([*git, "-C", str(origin), "add", "."], check=True)
    subprocess.run([*git, "-C", str(origin), "commit", "-qm", "one"], check=True)
    first = subprocess.run(["git", "-C", str(origin), "rev-parse", "HEAD"], capture_output=True, text=True)
    dest = tmp_path / "workspace"
    dest.mkdir()

    def clone(commit: str) -> str:
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "REPO": f"file://{origin}", "COMMIT": commit}
        done = subprocess.run(
            ["/bin/sh", "-c", clone_script()], env={**env, "DEST": str(dest)}, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "workspace at" in clone(first.stdout.strip())
    assert (dest / "app.txt").read_text() == "one\n"
    (origin / "app.txt").write_text("two\n")
    subprocess.run([*git, "-C", str(origin), "commit", "-qam", "two"], check=True)
    second = subprocess.run(["git", "-C", str(origin), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert "workspace at" in clone(second.stdout.strip())
    assert (dest / "app.txt").read_text() == "two\n"
    assert "already at" in clone(second.stdout.strip())
    # Local work is never overwritten by a new commit.
    (dest / "app.txt").write_text("mine\n")
    assert "local changes" in clone(first.stdout.strip())
    assert (dest / "app.txt").read_text() == "mine\n"
    # A hook the workspace planted never runs.
    hook = dest / ".git" / "hooks" / "post-checkout"
    hook.write_text(f"#!/bin/sh\ntouch {shlex.quote(str(tmp_path / 'hooked'))}\n")
    hook.chmod(0o755)
    (dest / "app.txt").write_text("two\n")
    assert "workspace at" in clone(first.stdout.strip())
    assert not (tmp_path / "hooked").exists()


def test_a_reapply_of_the_same_generation_keeps_the_commit() -> None:
    made = target()
    annotations = render_environment(made, namespace="envhub-shop-dev-7")[0]["metadata"]["annotations"]
    assert pinned_commit(annotations, made.generation) == COMMIT
    assert pinned_commit(annotations, made.generation + 1) is None  # a redeploy resolves the ref again
    assert pinned_commit({}, 1) is None


def test_a_wake_reads_the_lifecycle_commands_from_the_namespace() -> None:
    """The Namespace records the lifecycle commands of every form, for a wake to run without a fetch."""
    text = PYTHON_TEMPLATE.replace(
        '"postStartCommand": ["python3", "-m", "shop.migrate"],',
        '"postStartCommand": ["python3", "-m", "shop.migrate"], '
        '"postAttachCommand": {"hello": "echo \'hi\' $WHO", "db": ["sh", "-c", "true"]},',
    )
    made = target(text)
    annotations = render_environment(made, namespace="envhub-shop-dev-7")[0]["metadata"]["annotations"]
    kept = kept_workspace(annotations)
    assert kept is not None
    assert kept.commit == COMMIT
    assert kept.config.path == made.workspace.config.path
    assert kept.config.lifecycle == made.workspace.config.lifecycle
    assert [step.hook for step in kept.config.lifecycle] == [
        "postCreateCommand",
        "postStartCommand",
        "postAttachCommand",
    ]
    assert kept.config.remote_env == made.workspace.config.remote_env
    # No lifecycle commands, or annotations that are not as envhub writes them: nothing to run.
    plain = PYTHON_TEMPLATE.replace('"postCreateCommand": "pip3 install --user -r requirements.txt",', "")
    plain = plain.replace('"postStartCommand": ["python3", "-m", "shop.migrate"],', "")
    assert kept_workspace(render_environment(target(plain))[0]["metadata"]["annotations"]) is None
    broken = {**annotations, "envhub.dev/lifecycle": '{"path": "x", "steps": [{"hook": "onCreate"}]}'}
    assert kept_workspace(broken) is None
    assert kept_workspace({}) is None


BUILT = """
{
  "name": "Shop (Dockerfile)",
  "build": { "dockerfile": "Dockerfile", "context": "..", "args": { "VARIANT": "3.12" }, "target": "dev" },
  "forwardPorts": [8000],
}
"""


def test_a_build_becomes_one_job_per_build_in_the_builder_namespace() -> None:
    settings = BuilderSettings(
        namespace="envhub-builds", registry="registry.test/envhub/", push_secret="push"
    )
    found = config(BUILT, builder=True)
    assert found.build is not None
    assert found.image == ""
    made = make_target(7, repo_url=REPO)
    plan = plan_build(made, found.build, path=found.path, commit=COMMIT, settings=settings)
    assert plan.image.startswith("registry.test/envhub/acme-shop-devcontainer:")
    job = plan.job
    assert job["metadata"]["namespace"] == "envhub-builds"
    [container] = job["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[args.index("--opt") + 1] == f"context={REPO}#{COMMIT}"  # the context is the repository root
    assert "filename=.devcontainer/Dockerfile" in args
    assert "build-arg:VARIANT=3.12" in args
    assert "target=dev" in args
    assert args[-1] == f"type=image,name={plan.image},push=true"
    assert job["spec"]["backoffLimit"] == 0
    # The same build is the same Job and image; another commit is another.
    assert plan_build(made, found.build, path=found.path, commit=COMMIT, settings=settings) == plan
    other = plan_build(made, found.build, path=found.path, commit="f" * 40, settings=settings)
    assert other.name != plan.name
    assert other.image != plan.image
    escaping = config(BUILT.replace('"context": ".."', '"context": "../.."'), builder=True)
    assert escaping.build is not None
    with pytest.raises(DevcontainerInvalid):
        plan_build(made, escaping.build, path=escaping.path, commit=COMMIT, settings=settings)


def test_mounts_that_would_collide_are_listed_and_a_root_workspace_refused() -> None:
    text = """{
      "image": "ghcr.io/devcontainers/base:bookworm",
      "workspaceFolder": "/src",
      "mounts": [
        "source=cache,target=/cache,type=volume",
        "source=other,target=/cache,type=volume",
        {"source": "src", "target": "/src", "type": "volume"},
      ],
    }"""
    found = config(text)
    assert [m.source for m in found.mounts] == ["cache"]
    refused = [entry.reason for entry in found.unsupported if entry.key == "mounts"]
    assert refused == [
        "volume other: /cache is already mounted (the workspace or a volume)",
        "volume src: /src is already mounted (the workspace or a volume)",
    ]
    with pytest.raises(DevcontainerInvalid):
        config('{"image": "ghcr.io/devcontainers/base:bookworm", "workspaceFolder": "/"}')


def test_envhubs_browser_feature_is_kept_for_a_sidecar_and_other_features_are_listed() -> None:
    text = PYTHON_TEMPLATE.replace(
        '"ghcr.io/devcontainers/features/git:1": {},',
        '"ghcr.io/devcontainers/features/git:1": {}, "envhub/playwright": {},',
    )
    found = config(text)
    assert found.features == ("envhub/playwright",)
    listed = {entry.key for entry in found.unsupported}
    assert {
        "features.ghcr.io/devcontainers/features/git:1",
        "features.ghcr.io/devcontainers/features/node:1",
    } <= listed
    assert "features.envhub/playwright" not in listed
    # An operator who lends no browser: the feature is listed too, with why.
    refused = browser.honour(found, "off")
    assert refused is not None
    assert refused.features == ()
    assert any(
        e.key == "features.envhub/playwright" and "ENVHUB_BROWSER=off" in e.reason
        for e in refused.unsupported
    )


def test_the_sidecar_joins_the_workspace_and_mounts_it() -> None:
    """A script written in the workspace runs in the sidecar by the same path; beside container
    services too, since only the workspace's pod can mount its (ReadWriteOnce) claim."""
    sidecar = BrowserSidecar("mcr.microsoft.com/playwright/python:v1")
    web = {"name": "web", "image": "shop:1", "ports": [8080], "public": True}
    numeric = PYTHON_TEMPLATE.replace('"remoteUser": "vscode"', '"remoteUser": "1000"')
    for made, user in ((target(), IMAGE_USER), (target(services=[web]), IMAGE_USER), (target(numeric), 1000)):
        objects = render_environment(made, browser=sidecar)
        deployment = by_kind(objects, "Deployment", WORKSPACE)
        pod = deployment["spec"]["template"]["spec"]
        app, browser_container = pod["containers"]
        assert browser_container["name"] == CONTAINER
        mounts = {m["mountPath"]: m["name"] for m in browser_container["volumeMounts"]}
        assert mounts == {SHARED_PATH: VOLUME, "/workspaces/shop": WORKSPACE}
        assert {"name": WORKSPACE, "persistentVolumeClaim": {"claimName": WORKSPACE}} in pod["volumes"]
        assert browser_container["workingDir"] == app["workingDir"] == "/workspaces/shop"
        # The workspace's own user where it names a uid (what it writes there is the workspace's).
        context = browser_container["securityContext"]
        assert (context["runAsUser"], context["runAsGroup"], context["runAsNonRoot"]) == (user, user, True)
        assert {e["name"]: e["value"] for e in browser_container["env"]}["HOME"] == SHARED_PATH
        assert workload_problems(deployment) == []
        # No other pod gets it.
        others = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] != WORKSPACE]
        assert all(len(o["spec"]["template"]["spec"]["containers"]) == 1 for o in others)
    kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(), strict=True)
