"""A development environment's workspace on a cluster, made from its repository's devcontainer.json.

What the Kubernetes runtime honours of the file (:func:`kubernetes_config`), and the
objects it becomes (:func:`render_workspace`), pure like the rest of ``domain/kube``:

* a PersistentVolumeClaim holding the workspace, so it survives restarts and
  redeploys (one more per named volume of ``mounts``);
* a Deployment of one pod running the dev container's ``image``, with
  ``containerEnv`` as its environment and ``workspaceFolder`` (the claim's mount)
  as its working directory. An init container clones the repository at the
  environment's commit into an empty workspace, and moves a clean one to a new
  commit; a workspace with local changes is left as it is. The pod restarts
  (``Recreate``: a claim is mounted by one pod at a time) when the commit does;
* a Service with one port per ``forwardPorts`` entry, each relayed to its own URL;
* when the project's repository is on GitHub and envhub's web is reachable in the
  cluster (``WorkspaceSettings.envhub``), git credentials for that repository's
  origin, asked of envhub with a token the kubelet projects (``git_credentials.py``).

Without container services of its own the environment's app is the project's
command, run in the workspace on the first forwarded port as ``$PORT`` (as the
local runtime does); otherwise the workspace container only stays up, and people
and agents work in it. ``remoteEnv`` reaches exec sessions (terminals, lifecycle
commands): ``workspace_shell.with_remote_env`` wraps their command, from the
Namespace's annotations (``workspace_record.py``).
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import json5

from envhub.domain.browser import FEATURE as BROWSER_FEATURE
from envhub.domain.browser import feature_id
from envhub.domain.devcontainer import Devcontainer, Workspace, parse, without_reserved
from envhub.domain.kube import git_credentials as git
from envhub.domain.kube.deployments import PublicEndpoint, public_endpoint, workload_labels
from envhub.domain.kube.names import SECRETS_ANNOTATION, SECRETS_NAME, WORKLOAD_ACCOUNT, metadata
from envhub.domain.kube.workspace_shell import clone_script
from envhub.domain.repos import GIT_TOKEN_SECRET, GIT_USERNAME_SECRET
from envhub.domain.specs import ENVHUB_VARIABLES, EnvironmentTarget
from envhub.errors import DevcontainerBuildUnavailable, DevcontainerInvalid

WORKSPACE = "workspace"  # the Deployment, its container, its Service and its claim
CLONE_CONTAINER = "clone"
# On the workspace's claim: the commit whose postCreateCommand succeeded, and the pod whose
# postStartCommand ran (the claim is the workspace: what ran in it is remembered with it).
CREATED_ANNOTATION = "envhub.dev/post-create-commit"
STARTED_ANNOTATION = "envhub.dev/post-start-pod"
# On the workspace's pods: the commit they were made from (on the Namespace too: workspace_record.py).
COMMIT_ANNOTATION = "envhub.dev/workspace-commit"
DEFAULT_GIT_IMAGE = "alpine/git:2.47.2"
DEFAULT_APP_PORT = 8080
_KEEP_ALIVE = "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done"
_CONTAINER_REF = re.compile(r"\$\{containerEnv:([A-Za-z_][A-Za-z0-9_]*)")
_NOT_DNS = re.compile(r"[^a-z0-9-]+")
_NUMERIC_USER = re.compile(r"[0-9]{1,10}")


@dataclass(frozen=True, slots=True)
class WorkspaceSettings:
    """The operator's choices for workspaces (``ENVHUB_KUBE_WORKSPACE_*``)."""

    git_image: str = DEFAULT_GIT_IMAGE  # runs the clone; needs git and a POSIX shell
    storage_class: str = ""  # "": the cluster's default StorageClass
    size: str = "10Gi"
    volume_size: str = "1Gi"  # each named volume of ``mounts``
    # envhub's web as workspace pods reach it; None: git inside gets no credentials from envhub.
    envhub: git.EnvhubWeb | None = None


def default_folder(repo_url: str) -> str:
    """Where the repository is when the file names no ``workspaceFolder``: ``/workspaces/<name>``,
    as the dev container tools do."""
    name = posixpath.basename(repo_url.rstrip("/").split(":")[-1]).removesuffix(".git")
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-") or "workspace"
    return f"/workspaces/{name[:100]}"


def kubernetes_config(
    text: str, *, path: str, repo_url: str, local_env: Mapping[str, str], builder: bool = False
) -> Devcontainer:
    """``text`` (a devcontainer.json) as the Kubernetes runtime honours it; what it does not, listed.

    ``${containerEnv:NAME}`` of a variable the image sets is left for the
    container's shell to fill (the image's variables are not known here).
    Raises :class:`DevcontainerBuildUnavailable` for a file that builds its
    image and names none, without an image builder (``builder``); with one,
    ``build`` is kept and the runtime sets ``image`` once it is built
    (``builds.py``).
    """
    try:
        data = json5.loads(text)
    except ValueError:
        data = None  # parse() names the problem
    named = isinstance(data, dict) and isinstance(data.get("workspaceFolder"), str)
    config = parse(
        text,
        path=path,
        local_env=local_env,
        base_env={name: f"${{{name}}}" for name in _CONTAINER_REF.findall(text)},
        builder=builder,
        folder=None if named else default_folder(repo_url),
    )
    config = without_reserved(config)
    if not config.image and config.build is None:
        if any(entry.key == "build" for entry in config.unsupported):
            raise DevcontainerBuildUnavailable(
                f"{path}: build.dockerfile needs an in-cluster image builder, and this envhub has none; "
                "name a prebuilt image",
                details={"path": path, "key": "build"},
            )
        raise DevcontainerInvalid(
            f"{path}: image: the Kubernetes runtime runs the dev container from an image; name one",
            details={"path": path, "reason": "bad_value", "key": "image"},
        )
    config = replace(config, workspace_folder=config.workspace_folder or default_folder(repo_url))
    if config.workspace_folder == "/":
        raise DevcontainerInvalid(
            f"{path}: workspaceFolder: the workspace is a volume, and cannot be mounted at /",
            details={"path": path, "reason": "bad_value", "key": "workspaceFolder"},
        )
    config = _mounts_apart(config)
    if config.remote_user and not _NUMERIC_USER.fullmatch(config.remote_user):
        config = replace(config, remote_user="").refuse(
            "remoteUser",
            f"{config.remote_user!r} is a user name: Kubernetes runs containers as a numeric user id, "
            "so the image's own user is used (name a uid to run as it)",
        )
    # envhub's own browser feature is a sidecar (domain/kube/browser.py), when the operator lends one.
    kept = tuple(f for f in config.features if feature_id(f) == BROWSER_FEATURE)
    for feature in config.features:
        if feature not in kept:
            config = config.refuse(
                f"features.{feature}", "the Kubernetes runtime installs no features: the image must bring it"
            )
    published = config.ports[0].port if config.ports else None
    return replace(config, features=kept, published_port=published, ports_relayed=bool(config.ports))


def _mounts_apart(config: Devcontainer) -> Devcontainer:
    """The named volumes that can be mounted beside the workspace: each at a path of its own."""
    taken = {config.workspace_folder}
    kept = []
    for mount in config.mounts:
        if mount.target in taken:
            why = f"volume {mount.source}: {mount.target} is already mounted (the workspace or a volume)"
            config = config.refuse("mounts", why)
            continue
        taken.add(mount.target)
        kept.append(mount)
    return replace(config, mounts=tuple(kept))


def serves_app(target: EnvironmentTarget) -> bool:
    """Whether the workspace runs the environment's app (it has no container services of its own)."""
    return target.workspace is not None and not target.spec.services


def app_port(workspace: Workspace) -> int:
    return workspace.config.published_port or DEFAULT_APP_PORT


def environment_endpoint(target: EnvironmentTarget, *, namespace: str) -> PublicEndpoint | None:
    """The public endpoint: the first public service's, else the workspace's app."""
    found = public_endpoint(target.spec, namespace=namespace)
    if found is None and target.workspace is not None and serves_app(target):
        return PublicEndpoint(service=WORKSPACE, namespace=namespace, port=app_port(target.workspace))
    return found


def own_url_ports(target: EnvironmentTarget, *, namespace: str) -> dict[int, PublicEndpoint]:
    """The forwarded ports that get a public URL of their own, each with where it is served: every
    one the workspace's Service relays but the port on the environment's own URL."""
    workspace = target.workspace
    if workspace is None or not workspace.config.ports_relayed:
        return {}
    app = app_port(workspace) if serves_app(target) else None
    return {
        port.port: PublicEndpoint(service=WORKSPACE, namespace=namespace, port=port.port)
        for port in workspace.config.ports
        if port.port != app
    }


def volume_claim(source: str) -> str:
    """The claim of a named volume: a DNS label, one per name."""
    digest = hashlib.sha256(source.encode()).hexdigest()[:8]
    slug = _NOT_DNS.sub("-", source.lower()).strip("-")[:40].strip("-")
    return f"volume-{slug}-{digest}" if slug else f"volume-{digest}"


def render_workspace(
    target: EnvironmentTarget, *, namespace: str, settings: WorkspaceSettings
) -> list[dict[str, Any]]:
    """The workspace's claims, Service (when it forwards ports) and Deployment, in apply order."""
    workspace = target.workspace
    if workspace is None:
        return []
    config = workspace.config
    labels = workload_labels(target, WORKSPACE)
    objects = [_claim(WORKSPACE, namespace, labels, settings, settings.size)]
    objects += [
        _claim(volume_claim(mount.source), namespace, labels, settings, settings.volume_size)
        for mount in _unique_volumes(config)
    ]
    ports = _ports(target)
    if ports:
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": metadata(WORKSPACE, namespace, labels),
                "spec": {
                    "type": "ClusterIP",
                    "selector": _selector(),
                    "ports": [
                        {"name": f"tcp-{port}", "port": port, "targetPort": port, "protocol": "TCP"}
                        for port in ports
                    ],
                },
            }
        )
    objects.append(_deployment(target, workspace, namespace=namespace, settings=settings, ports=ports))
    return objects


def gives_git_credentials(target: EnvironmentTarget, settings: WorkspaceSettings) -> bool:
    """Whether the workspace's git asks envhub for the project repository's credentials."""
    return target.workspace is not None and bool(target.git_origin) and settings.envhub is not None


def render_git_access(
    target: EnvironmentTarget, *, namespace: str, settings: WorkspaceSettings
) -> list[dict[str, Any]]:
    """The helper's ConfigMap and the policy that lets the workspace reach envhub (envhub's own
    objects: they pass no manifest guard, and their names are reserved)."""
    if not gives_git_credentials(target, settings):
        return []
    assert settings.envhub is not None
    labels = target.labels
    return [
        git.render_envhub_policy(settings.envhub, namespace=namespace, labels=labels, pods=_selector()),
        git.render_helper_config_map(namespace=namespace, labels=labels),
    ]


def _selector() -> dict[str, str]:
    return {"app.kubernetes.io/name": WORKSPACE, "envhub.dev/service": WORKSPACE}


def _ports(target: EnvironmentTarget) -> list[int]:
    assert target.workspace is not None
    ports = [port.port for port in target.workspace.config.ports]
    if serves_app(target) and app_port(target.workspace) not in ports:
        ports.insert(0, app_port(target.workspace))
    return ports


def _unique_volumes(config: Devcontainer) -> list[Any]:
    seen: dict[str, Any] = {}
    for mount in config.mounts:
        seen.setdefault(mount.source, mount)
    return list(seen.values())


def _claim(
    name: str, namespace: str, labels: dict[str, str], settings: WorkspaceSettings, size: str
) -> dict[str, Any]:
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    if settings.storage_class:
        spec["storageClassName"] = settings.storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": metadata(name, namespace, labels),
        "spec": spec,
    }


def _env(
    target: EnvironmentTarget, config: Devcontainer, settings: WorkspaceSettings
) -> list[dict[str, str]]:
    """containerEnv, then the project's variables over it, then envhub's own (which nothing fakes)."""
    theirs = {
        name: value
        for name, value in {**config.container_env, **target.spec.env}.items()
        if name not in ENVHUB_VARIABLES
    }
    ours = dict(target.variables)
    if serves_app(target):
        assert target.workspace is not None
        ours["PORT"] = str(app_port(target.workspace))
    if gives_git_credentials(target, settings):
        assert settings.envhub is not None
        ours |= git.git_variables(target.git_origin, settings.envhub)
    # The fetch token is envhub's (the clone's), not the workspace's: set empty over the Secret's
    # value (an env entry wins over envFrom), as the local runtime withholds it.
    withheld = {name: "" for name in (GIT_TOKEN_SECRET, GIT_USERNAME_SECRET) if name in target.secrets}
    return [{"name": name, "value": value} for name, value in {**theirs, **withheld, **ours}.items()]


def _user_context(config: Devcontainer) -> dict[str, Any]:
    context: dict[str, Any] = {"allowPrivilegeEscalation": False}
    if config.remote_user:
        context["runAsUser"] = int(config.remote_user)
    return context


def _deployment(
    target: EnvironmentTarget,
    workspace: Workspace,
    *,
    namespace: str,
    settings: WorkspaceSettings,
    ports: list[int],
) -> dict[str, Any]:
    config = workspace.config
    folder = config.workspace_folder
    labels = workload_labels(target, WORKSPACE)
    mounts: list[dict[str, Any]] = [{"name": WORKSPACE, "mountPath": folder}]
    volumes: list[dict[str, Any]] = [{"name": WORKSPACE, "persistentVolumeClaim": {"claimName": WORKSPACE}}]
    for mount in config.mounts:
        claim = volume_claim(mount.source)
        if all(volume["name"] != claim for volume in volumes):
            volumes.append({"name": claim, "persistentVolumeClaim": {"claimName": claim}})
        entry: dict[str, Any] = {"name": claim, "mountPath": mount.target}
        if mount.read_only:
            entry["readOnly"] = True
        mounts.append(entry)
    if gives_git_credentials(target, settings):
        volumes.append(git.volume())
        mounts.append(git.volume_mount())
    command = target.spec.command if serves_app(target) else _KEEP_ALIVE
    container: dict[str, Any] = {
        "name": WORKSPACE,
        "image": config.image,
        "command": ["/bin/sh", "-c", command],
        "workingDir": folder,
        "env": _env(target, config, settings),
    }
    if target.secrets:
        container["envFrom"] = [{"secretRef": {"name": SECRETS_NAME}}]
    if ports:
        container["ports"] = [
            {"name": f"tcp-{port}", "containerPort": port, "protocol": "TCP"} for port in ports
        ]
    if serves_app(target):
        container["readinessProbe"] = {
            "tcpSocket": {"port": app_port(workspace)},
            "periodSeconds": 2,
            "failureThreshold": 3,
        }
    container["volumeMounts"] = mounts
    container["securityContext"] = _user_context(config)
    clone = _clone_container(target, workspace, settings=settings)
    pod_spec: dict[str, Any] = {
        "serviceAccountName": WORKLOAD_ACCOUNT,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "initContainers": [clone],
        "containers": [container],
        "volumes": volumes,
    }
    if config.remote_user:
        pod_spec["securityContext"]["fsGroup"] = int(config.remote_user)
    annotations = {COMMIT_ANNOTATION: workspace.commit}
    if target.secrets and target.secrets_digest:
        annotations[SECRETS_ANNOTATION] = target.secrets_digest
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(WORKSPACE, namespace, labels),
        "spec": {
            "replicas": 1,
            "revisionHistoryLimit": 3,
            # The claim is ReadWriteOnce: the old pod lets go of it before the new one mounts it.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": _selector()},
            "template": {
                "metadata": {"labels": dict(labels), "annotations": annotations},
                "spec": pod_spec,
            },
        },
    }


def _clone_container(
    target: EnvironmentTarget, workspace: Workspace, *, settings: WorkspaceSettings
) -> dict[str, Any]:
    assert target.spec.repo_url is not None
    folder = workspace.config.workspace_folder
    env: list[dict[str, Any]] = [
        {"name": "REPO", "value": target.spec.repo_url},
        {"name": "COMMIT", "value": workspace.commit},
        {"name": "DEST", "value": folder},
        {"name": "HOME", "value": "/tmp"},  # noqa: S108 (git's home in a container of its own)
    ]
    if target.secrets.get(GIT_TOKEN_SECRET):
        # By reference: the clone authenticates; the dev container's own env withholds it (_env).
        env.append(
            {
                "name": "GIT_TOKEN",
                "valueFrom": {
                    "secretKeyRef": {"name": SECRETS_NAME, "key": GIT_TOKEN_SECRET, "optional": True}
                },
            }
        )
    return {
        "name": CLONE_CONTAINER,
        "image": settings.git_image,
        "command": ["/bin/sh", "-c", clone_script()],
        "env": env,
        "volumeMounts": [{"name": WORKSPACE, "mountPath": folder}],
        "securityContext": _user_context(workspace.config),
    }
