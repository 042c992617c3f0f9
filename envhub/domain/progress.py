"""Progress steps of a job, as shown to the user while it runs."""

from __future__ import annotations

from enum import StrEnum
from typing import TypedDict


class StepStatus(StrEnum):
    pending = "pending"
    running = "running"
    done = "done"
    failed = "failed"
    skipped = "skipped"


class Step(TypedDict):
    key: str
    title: str
    status: str
    detail: str
    started_at: str | None
    finished_at: str | None


PROVISION_STEPS: tuple[tuple[str, str], ...] = (
    ("workspace", "Prepare workspace"),
    ("start", "Start processes"),
    ("health", "Wait for health check"),
    ("publish", "Publish URL"),
)
# What a cluster makes before anything runs in an environment: the first steps of its
# provisioning, and all of a deployment environment's ``prepare`` run.
PREPARE_STEPS: tuple[tuple[str, str], ...] = (
    ("namespace", "Create namespace"),
    ("isolation", "Apply quota, limits, network policy and RBAC"),
)
# Titles of steps a run adds when it needs them (not in a runtime's plan).
EXTRA_STEP_TITLES: dict[str, str] = {
    "devcontainer": "Read devcontainer.json",
    "build": "Build the dev container's image",
    "post_create": "Run postCreateCommand",
    "post_start": "Run postStartCommand",
    "post_attach": "Run postAttachCommand",
}
TEARDOWN_STEPS: tuple[tuple[str, str], ...] = (
    ("stop", "Stop processes"),
    ("cleanup", "Remove workspace"),
)
# Going to sleep stops what runs and keeps the workspace; waking starts it again from it.
SLEEP_STEPS: tuple[tuple[str, str], ...] = (("sleep", "Stop processes, keep the workspace"),)
WAKE_STEPS: tuple[tuple[str, str], ...] = (
    ("start", "Start processes"),
    ("health", "Wait for health check"),
    ("publish", "Publish URL"),
)


def initial_steps(plan: tuple[tuple[str, str], ...]) -> list[Step]:
    return [
        Step(key=k, title=t, status=StepStatus.pending, detail="", started_at=None, finished_at=None)
        for k, t in plan
    ]
