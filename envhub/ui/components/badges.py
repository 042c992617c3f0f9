"""Status badges: one colour per environment phase, job status and outcome."""

from __future__ import annotations

import reflex as rx

PHASE_COLORS: dict[str, str] = {
    "pending": "gray",
    "provisioning": "blue",
    "ready": "green",
    "updating": "blue",
    "sleeping": "gray",
    "failed": "red",
    "deleting": "orange",
    "deleted": "gray",
}
# Working phases get a spinner so "something is happening" reads at a glance.
WORKING = ("pending", "provisioning", "updating", "deleting")
RUN_COLORS: dict[str, str] = {
    "queued": "gray",
    "running": "blue",
    "succeeded": "green",
    "failed": "red",
    "abandoned": "gray",
}


def _colored(value: rx.Var[str], colors: dict[str, str], *, busy: tuple[str, ...], **props) -> rx.Component:
    cases = [
        (
            name,
            rx.badge(*([rx.spinner(size="1")] if name in busy else []), name, color_scheme=color, **props),
        )
        for name, color in colors.items()
    ]
    return rx.match(value, *cases, rx.badge(value, color_scheme="gray", **props))


def phase_badge(phase: rx.Var[str], size: str = "1") -> rx.Component:
    dot = rx.box(width="6px", height="6px", border_radius="50%", background="currentColor")
    cases = []
    for name, color in PHASE_COLORS.items():
        icon = rx.spinner(size="1") if name in WORKING else dot
        cases.append(
            (
                name,
                rx.badge(
                    icon,
                    name,
                    color_scheme=color,
                    radius="full",
                    size=size,
                    variant="soft",
                    class_name="phase",
                ),
            )
        )
    return rx.match(phase, *cases, rx.badge(phase, color_scheme="gray", radius="full", size=size))


def run_status_badge(status: rx.Var[str]) -> rx.Component:
    return _colored(status, RUN_COLORS, busy=("queued", "running"), variant="surface", radius="full")


def outcome_badge(outcome: rx.Var[str]) -> rx.Component:
    return rx.cond(
        outcome == "success",
        rx.badge(rx.icon("check", size=12), "success", color_scheme="green", variant="soft"),
        rx.badge(rx.icon("x", size=12), outcome, color_scheme="red", variant="soft"),
    )


def kind_badge(kind: rx.Var[str]) -> rx.Component:
    return rx.badge(
        rx.cond(kind == "deployment", rx.icon("rocket", size=12), rx.icon("git-branch", size=12)),
        kind,
        variant="outline",
        color_scheme="gray",
    )


# What made an environment, read at a glance (values: domain.specs.Trigger).
TRIGGERS: dict[str, tuple[str, str]] = {
    "manual": ("hand", "by hand"),
    "agent": ("bot", "agent"),
    "pull_request": ("git-pull-request", "pull request"),
    "push": ("git-commit-horizontal", "push"),
}


def trigger_badge(trigger: rx.Var[str]) -> rx.Component:
    cases = [
        (
            name,
            rx.badge(
                rx.icon(icon, size=12),
                label,
                variant="soft",
                color_scheme="violet" if name == "agent" else "gray",
                class_name="trigger",
            ),
        )
        for name, (icon, label) in TRIGGERS.items()
    ]
    return rx.match(trigger, *cases, rx.badge(trigger, variant="soft", color_scheme="gray"))
