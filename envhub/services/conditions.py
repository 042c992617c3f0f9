"""What a runtime's condition codes mean to a person (``Environment.condition``).

Besides its phase, an environment carries what the runtime last saw of it
(``absent``, ``degraded``…) or why envhub cannot see (``cluster_unreachable``…).
Every face explains a code the same way: a title, a next step, and a tone.
"""

from __future__ import annotations

from typing import TypedDict


class ConditionView(TypedDict):
    title: str
    hint: str
    tone: str  # a Radix colour: amber for "cannot see", red for "not serving", blue for "on its way"


# What the runtime reports apart from the phase (``Environment.condition``). The
# ``cluster_*`` codes mean envhub cannot see the cluster, so faces show the
# state from before; the others are what the runtime saw.
CONDITIONS: dict[str, ConditionView] = {
    "cluster_unreachable": ConditionView(
        title="Cluster unreachable — showing the last known state",
        hint="envhub keeps retrying. If it lasts, check the cluster's API server and envhub's "
        "network path to it.",
        tone="amber",
    ),
    "cluster_unauthorized": ConditionView(
        title="Cluster credentials refused — showing the last known state",
        hint="Renew envhub's kubeconfig or service account token.",
        tone="amber",
    ),
    "cluster_forbidden": ConditionView(
        title="Not allowed to read the cluster — showing the last known state",
        hint="Grant envhub's service account the permission named in the message.",
        tone="amber",
    ),
    "absent": ConditionView(
        title="Not running — its workloads are gone",
        hint="They were removed outside envhub (or the machine restarted); envhub starts them again "
        "by itself. Redeploy to do it now.",
        tone="red",
    ),
    "starting": ConditionView(
        title="Restarting — not serving right now",
        hint="Its workloads are starting again; the URL answers once they pass their health check.",
        tone="blue",
    ),
    "degraded": ConditionView(
        title="Unhealthy — not serving",
        hint="Look at the workloads and logs below; fix the cause and redeploy.",
        tone="red",
    ),
    # Local runtime: how the environment is isolated, when it is less than usual.
    "no_network": ConditionView(
        title="No network — the environment can reach nothing outside itself",
        hint="It is isolated and serving, but has no outbound traffic: an operator installs "
        "slirp4netns (apt-get install slirp4netns) and redeploys.",
        tone="amber",
    ),
    "weak_sandbox": ConditionView(
        title="Weak isolation — trusted code only",
        hint="The operator set ENVHUB_LOCAL_SANDBOX to unshare or none: this environment shares the "
        "host's files and network. Run only code you trust here.",
        tone="amber",
    ),
}


def condition_view(code: str | None) -> ConditionView:
    if not code:
        return ConditionView(title="", hint="", tone="gray")
    return CONDITIONS.get(
        code, ConditionView(title=f"Runtime reports: {code}", hint="Read the logs below.", tone="amber")
    )
