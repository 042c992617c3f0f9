"""A dev container's image built in the cluster: a rootless BuildKit Job, when the operator configures one.

A devcontainer.json's ``build`` (a Dockerfile) becomes one Job in the operator's
build namespace (never an environment's: rootless BuildKit needs its seccomp and
AppArmor profiles unconfined, which an environment's Pod Security level refuses).
BuildKit reads the build context straight from the repository at the commit
(``<repo>#<commit>:<folder>``), so nothing of the repository passes through
envhub, and pushes the image to the operator's registry under a tag that is a
digest of everything the build depends on: the same build is the same Job and
the same image, made once however many environments or redeploys ask for it.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import dataclass
from typing import Any

from envhub.domain.devcontainer import Build
from envhub.domain.kube.names import metadata
from envhub.domain.specs import EnvironmentTarget
from envhub.errors import DevcontainerInvalid

BUILD_CONTAINER = "buildkit"
DEFAULT_BUILDER_IMAGE = "moby/buildkit:v0.18.2-rootless"
_ROOTLESS_UID = 1000  # the rootless image's own user


@dataclass(frozen=True, slots=True)
class BuilderSettings:
    """Where and how images are built (``ENVHUB_KUBE_BUILDER_*``)."""

    namespace: str
    registry: str  # pushed as <registry>/<team>-<project>-devcontainer:<digest>
    image: str = DEFAULT_BUILDER_IMAGE
    push_secret: str = ""  # a kubernetes.io/dockerconfigjson Secret in the namespace
    timeout: float = 1800.0


@dataclass(frozen=True, slots=True)
class BuildPlan:
    image: str  # what the workspace runs once the Job is complete
    job: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.job["metadata"]["name"])


def build_paths(path: str, build: Build) -> tuple[str, str]:
    """(context folder, Dockerfile relative to it), both inside the repository; ``path`` is the
    devcontainer.json's, which ``build``'s paths are relative to."""
    base = posixpath.dirname(path)
    context = posixpath.normpath(posixpath.join(base, build.context))
    dockerfile = posixpath.normpath(posixpath.join(base, build.dockerfile))
    inside = posixpath.relpath(dockerfile, context)
    if context.startswith("..") or posixpath.isabs(context) or inside.startswith(".."):
        raise DevcontainerInvalid(
            f"{path}: build: the context and the Dockerfile must be inside the repository, "
            "and the Dockerfile inside the context",
            details={"path": path, "reason": "bad_value", "key": "build"},
        )
    return ("" if context == "." else context), inside


def plan_build(
    target: EnvironmentTarget, build: Build, *, path: str, commit: str, settings: BuilderSettings
) -> BuildPlan:
    """The Job that builds ``build`` of the repository at ``commit``, and the image it pushes."""
    assert target.spec.repo_url is not None
    context, dockerfile = build_paths(path, build)
    wanted = {
        "repo": target.spec.repo_url,
        "commit": commit,
        "context": context,
        "dockerfile": dockerfile,
        "args": dict(sorted(build.args.items())),
        "target": build.target,
        "builder": settings.image,
    }
    digest = hashlib.sha256(json.dumps(wanted, sort_keys=True).encode()).hexdigest()[:24]
    image = f"{settings.registry.rstrip('/')}/{target.team}-{target.project}-devcontainer:{digest}"
    source = f"{target.spec.repo_url}#{commit}" + (f":{context}" if context else "")
    args = [
        "build",
        "--frontend",
        "dockerfile.v0",
        "--opt",
        f"context={source}",
        "--opt",
        f"filename={dockerfile}",
    ]
    for name, value in sorted(build.args.items()):
        args += ["--opt", f"build-arg:{name}={value}"]
    if build.target:
        args += ["--opt", f"target={build.target}"]
    args += ["--output", f"type=image,name={image},push=true"]
    home = "/home/user"
    mounts: list[dict[str, Any]] = [{"name": "buildkitd", "mountPath": f"{home}/.local/share/buildkit"}]
    volumes: list[dict[str, Any]] = [{"name": "buildkitd", "emptyDir": {}}]
    if settings.push_secret:
        mounts.append({"name": "push", "mountPath": f"{home}/.docker", "readOnly": True})
        volumes.append(
            {
                "name": "push",
                "secret": {
                    "secretName": settings.push_secret,
                    "items": [{"key": ".dockerconfigjson", "path": "config.json"}],
                },
            }
        )
    labels = {
        "app.kubernetes.io/managed-by": "envhub",
        "app.kubernetes.io/component": "devcontainer-build",
        "envhub.dev/project": target.project,
        "envhub.dev/team": target.team,
    }
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            **metadata(f"envhub-build-{digest}", settings.namespace, labels),
            "annotations": {"envhub.dev/image": image, "envhub.dev/commit": commit},
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": int(settings.timeout),
            "template": {
                "metadata": {
                    "labels": dict(labels),
                    # Rootless BuildKit makes its own user namespace: the default profiles forbid it.
                    "annotations": {
                        f"container.apparmor.security.beta.kubernetes.io/{BUILD_CONTAINER}": "unconfined"
                    },
                },
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "containers": [
                        {
                            "name": BUILD_CONTAINER,
                            "image": settings.image,
                            "command": ["buildctl-daemonless.sh"],
                            "args": args,
                            "env": [{"name": "BUILDKITD_FLAGS", "value": "--oci-worker-no-process-sandbox"}],
                            "securityContext": {
                                "seccompProfile": {"type": "Unconfined"},
                                "runAsUser": _ROOTLESS_UID,
                                "runAsGroup": _ROOTLESS_UID,
                            },
                            "volumeMounts": mounts,
                        }
                    ],
                    "volumes": volumes,
                },
            },
        },
    }
    return BuildPlan(image=image, job=job)
