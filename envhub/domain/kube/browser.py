"""Browser testing inside a cluster environment: Playwright's official image as a sidecar.

On Kubernetes nothing of envhub's machine is lent: the environment's public
service's pod gets one more container, ``playwright``, running the official
Playwright image (Chromium and Playwright for Python and Node, of one
version) and idling until someone execs into it (an agent's ``run_command``
with ``container="playwright"``, ``envhub shell -c playwright``). It shares
the pod's network, so the app answers it on ``127.0.0.1:$PORT``, and reaches
``ENVHUB_PUBLIC_URL`` like any client, through the environment's egress rules.
Both containers mount one ``emptyDir`` at :data:`SHARED_PATH`: scripts go in,
screenshots come out, and the app container can read them.

A development environment's workspace is a claim one pod mounts (ReadWriteOnce),
so there the sidecar joins the workspace's pod (``render.py``) and mounts the
workspace where the dev container does, as its working directory: a script an
agent wrote in the workspace runs as it is, by the same path. It runs as the
workspace's user when the dev container names one (``remoteUser``, a uid), so
what it writes there is the workspace's; the ``emptyDir`` stays its home.

The sidecar runs as the image's unprivileged user (``pwuser``), with every
capability dropped and no privilege escalation, under the pod's RuntimeDefault
seccomp profile: it passes Pod Security "restricted". That is also why
Chromium runs with ``--no-sandbox`` there (:data:`~envhub.domain.browser.
CHROMIUM_ARGS`): its own sandbox needs user namespaces the profile forbids.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from envhub.domain import browser
from envhub.domain.kube.workspace import WORKSPACE

CONTAINER = "playwright"
VOLUME = "envhub-browser"
SHARED_PATH = "/envhub-browser"
# pwuser in mcr.microsoft.com/playwright images (the Ubuntu images' own user holds 1000).
IMAGE_USER = 1001


@dataclass(frozen=True, slots=True)
class BrowserSidecar:
    """The sidecar's image and size (``ENVHUB_KUBE_BROWSER_IMAGE``); counted against the quota."""

    image: str
    cpu: str = "100m"
    memory: str = "512Mi"
    memory_limit: str = "2Gi"


def _sidecar(
    sidecar: BrowserSidecar, variables: dict[str, str], workspace: dict[str, Any] | None, user: int
) -> dict[str, Any]:
    """The container; ``workspace`` is the dev container's mount of its workspace (None: there is none)."""
    env = {
        **variables,
        browser.ARGS_VARIABLE: " ".join(browser.CHROMIUM_ARGS),
        "HOME": SHARED_PATH,
        "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1",
    }
    return {
        "name": CONTAINER,
        "image": sidecar.image,
        # Idles until exec'd into; exits at once (and cleanly) when the pod stops.
        "command": ["/bin/sh", "-c", "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done"],
        "workingDir": workspace["mountPath"] if workspace else SHARED_PATH,
        "env": [{"name": name, "value": value} for name, value in env.items()],
        "resources": {
            "requests": {"cpu": sidecar.cpu, "memory": sidecar.memory},
            "limits": {"memory": sidecar.memory_limit},
        },
        "volumeMounts": [
            {"name": VOLUME, "mountPath": SHARED_PATH},
            *([{"name": workspace["name"], "mountPath": workspace["mountPath"]}] if workspace else []),
        ],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
            "runAsUser": user,
            "runAsGroup": user,
        },
    }


def with_browser(
    deployment: dict[str, Any], sidecar: BrowserSidecar, variables: dict[str, str]
) -> dict[str, Any]:
    """``deployment`` (envhub's own rendering, not shared) with the sidecar and the shared folder,
    and the workspace when the pod is the workspace's."""
    pod = deployment["spec"]["template"]["spec"]
    app = pod["containers"][0]
    claims = {
        volume["name"]
        for volume in pod.get("volumes", [])
        if (volume.get("persistentVolumeClaim") or {}).get("claimName") == WORKSPACE
    }
    workspace = next((m for m in app.get("volumeMounts", []) if m["name"] in claims), None)
    user = (app.get("securityContext") or {}).get("runAsUser")
    user = user if workspace is not None and isinstance(user, int) and user > 0 else IMAGE_USER
    app["volumeMounts"] = [*app.get("volumeMounts", []), {"name": VOLUME, "mountPath": SHARED_PATH}]
    pod["containers"] = [*pod["containers"], _sidecar(sidecar, variables, workspace, user)]
    pod["volumes"] = [*pod.get("volumes", []), {"name": VOLUME, "emptyDir": {"sizeLimit": "1Gi"}}]
    return deployment
