"""Building a dev container's image with the operator's rootless BuildKit (``domain/kube/builds.py``).

The Job is created once (its name is the build's digest: a Job already there,
running or complete, is the same build; one that failed is replaced, so a
redeploy tries again) and watched until it is complete, failed, or past its
deadline. A complete Job is the image: redeploys and other
environments of the same commit use it without building again.
"""

from __future__ import annotations

import time
from typing import Any

from kubernetes.client import ApiClient

from envhub.domain.kube.builds import BuildPlan
from envhub.errors import ClusterConflict, ImageBuildFailed
from envhub.runtime.base import ProgressReporter
from envhub.runtime.kubernetes.readiness import job_complete, job_failure
from envhub.runtime.kubernetes.rest import request
from envhub.runtime.kubernetes.waiting import Watcher

STEP = "build"


def build_image(
    api: ApiClient, plan: BuildPlan, progress: ProgressReporter, *, timeout: float, heartbeat: float
) -> None:
    """Run ``plan``'s Job (unless it ran already) and wait until it has pushed ``plan.image``."""
    namespace = str(plan.job["metadata"]["namespace"])
    collection = f"/apis/batch/v1/namespaces/{namespace}/jobs"
    progress.begin(STEP, f"{plan.image} (Job {plan.name} in {namespace})")
    job = _started(api, plan, collection)
    deadline = time.monotonic() + timeout
    with Watcher(
        api,
        f"watching build Job {plan.name}",
        collection,
        query=[("fieldSelector", f"metadata.name={plan.name}")],
        version=str(job["metadata"].get("resourceVersion") or ""),
        deadline=deadline,
    ) as events:
        while not job_complete(job):
            failed = job_failure(job)
            if failed is not None:
                raise _failure(
                    plan, f"the build failed: {failed.get('reason', '')} {failed.get('message', '')}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _failure(plan, f"the build did not finish within {timeout:.0f}s")
            progress.heartbeat()
            event = events.next(min(remaining, heartbeat))
            if event is not None and event["type"] in ("ADDED", "MODIFIED"):
                job = {**event["object"], "kind": "Job"}
    progress.finish(STEP, f"{plan.image} built by Job {plan.name}")


def _started(api: ApiClient, plan: BuildPlan, collection: str) -> dict[str, Any]:
    """The build's Job: created, or the one there already (running or complete). One that failed
    before is replaced: a redeploy of the same build is a new try (a registry that was down)."""
    path = f"{collection}/{plan.name}"
    for attempt in range(2):
        try:
            job = request(api, f"starting build Job {plan.name}", "POST", collection, body=plan.job).body
        except ClusterConflict:
            job = request(api, f"reading build Job {plan.name}", "GET", path).body
            if attempt == 0 and job_failure({**job, "kind": "Job"}) is not None:
                body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
                request(api, f"removing failed build Job {plan.name}", "DELETE", path, body=body)
                continue
        return {**job, "kind": "Job"}
    raise ClusterConflict(f"build Job {plan.name} is still being removed; envhub tries again")


def _failure(plan: BuildPlan, why: str) -> ImageBuildFailed:
    details: dict[str, Any] = {
        "job": plan.name,
        "namespace": plan.job["metadata"]["namespace"],
        "image": plan.image,
    }
    return ImageBuildFailed(f"{why.strip()} (Job {plan.name})", details=details)
