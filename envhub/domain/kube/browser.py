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


def _sidecar(sidecar: BrowserSidecar, variables: dict[str, str]) -> dict[str, Any]:
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
        "workingDir": SHARED_PATH,
        "env": [{"name": name, "value": value} for name, value in env.items()],
        "resources": {
            "requests": {"cpu": sidecar.cpu, "memory": sidecar.memory},
            "limits": {"memory": sidecar.memory_limit},
        },
        "volumeMounts": [{"name": VOLUME, "mountPath": SHARED_PATH}],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
            "runAsUser": IMAGE_USER,
            "runAsGroup": IMAGE_USER,
        },
    }


def with_browser(
    deployment: dict[str, Any], sidecar: BrowserSidecar, variables: dict[str, str]
) -> dict[str, Any]:
    """``deployment`` (envhub's own rendering, not shared) with the sidecar and the shared folder."""
    pod = deployment["spec"]["template"]["spec"]
    app = pod["containers"][0]
    app["volumeMounts"] = [*app.get("volumeMounts", []), {"name": VOLUME, "mountPath": SHARED_PATH}]
    pod["containers"] = [*pod["containers"], _sidecar(sidecar, variables)]
    pod["volumes"] = [*pod.get("volumes", []), {"name": VOLUME, "emptyDir": {"sizeLimit": "1Gi"}}]
    return deployment
