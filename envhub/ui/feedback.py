"""How errors reach the person: a code, what happened, and what to do next.

Services raise :class:`EnvhubError` with a stable code; this module turns one
into a small view model (for callouts and field messages) or a toast. What a
code means (HTTP status, hint, advice for a failed environment) is registered
once, in ``envhub/errors.py``.
"""

from __future__ import annotations

import logging
from typing import TypedDict

import reflex as rx

from envhub.errors import EnvhubError, error_info

log = logging.getLogger(__name__)


class ErrorView(TypedDict):
    code: str
    message: str
    hint: str


NO_ERROR = ErrorView(code="", message="", hint="")


def error_view(exc: EnvhubError) -> ErrorView:
    return ErrorView(code=exc.code, message=exc.message, hint=exc.hint)


def unexpected_view(exc: Exception) -> ErrorView:
    log.exception("unexpected error in a dashboard action", exc_info=exc)
    return ErrorView(
        code="internal_error",
        message=f"unexpected error: {type(exc).__name__}",
        hint=error_info("internal_error").hint,
    )


def error_toast(error: ErrorView) -> rx.event.EventSpec:
    description = error["message"] + (f" — {error['hint']}" if error["hint"] else "")
    return rx.toast.error(f"Failed ({error['code']})", description=description, duration=8000)


def field_of(exc: EnvhubError, aliases: dict[str, str]) -> dict[str, str]:
    """The form fields an error is about, with the message to show under each.

    Services name fields in ``details``: either ``{"field": "project name"}`` or,
    for spec validation, one entry per invalid field (``{"ref": "..."}``).
    ``aliases`` maps those names to the form's field keys.
    """
    found: dict[str, str] = {}
    named = exc.details.get("field")
    if isinstance(named, str) and named in aliases:
        found[aliases[named]] = exc.message
    for key, value in exc.details.items():
        if key in aliases and isinstance(value, str) and key != "field":
            found.setdefault(aliases[key], value)
    return found


class ConditionView(TypedDict):
    title: str
    hint: str
    tone: str  # a Radix colour: amber for "cannot see", red for "not serving", blue for "on its way"


# What the runtime reports apart from the phase (``Environment.condition``). The
# ``cluster_*`` codes mean envhub cannot see the cluster, so the page shows the
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
