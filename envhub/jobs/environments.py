"""Converge one environment to what its row says: provision, update or tear down."""

from __future__ import annotations

import dataclasses
import logging

from envhub.errors import EnvhubError, RuntimeFailure
from envhub.jobs.observed import observed
from envhub.metrics import PROVISIONING_DURATION
from envhub.models.db import session_scope
from envhub.services import convergence, jobruns, ports, provisioning, pull_requests, sleeping

log = logging.getLogger(__name__)


@observed
def converge_environment(environment_id: int, run_id: int) -> str:
    outcome = _converge(environment_id, run_id)
    if outcome != "nothing to do":
        try:
            with session_scope() as session:
                pull_requests.environment_changed(
                    session=session, queue=ports.queue(), environment_id=environment_id
                )
        except Exception:  # the pull request's comment catches up at the next change; the deploy stands
            log.exception("could not ask for a pull request update after environment %s", environment_id)
    return outcome


def _converge(environment_id: int, run_id: int) -> str:
    with session_scope() as session:
        runtime, urls = ports.runtime(), ports.url_provider()
        assignment = convergence.begin_run(
            session, environment_id=environment_id, run_id=run_id, runtime=runtime
        )
        if assignment is None:
            return "nothing to do"
        progress = convergence.RunProgress(session, assignment)
        try:
            if assignment.desired_state == "present" and assignment.kind == jobruns.SLEEP:
                done = runtime.sleep(environment_id, progress=progress)
                return "asleep" if sleeping.complete_sleep(session, assignment, done) else "superseded"
            if assignment.desired_state == "present" and assignment.kind == jobruns.WAKE:
                woken = runtime.wake(convergence.prepared(session, assignment, urls=urls), progress=progress)
                kept = sleeping.kept_while_asleep(session, environment_id)
                progress.skip("publish", "its URL stayed published while it slept")
                convergence.complete_run(
                    session,
                    assignment,
                    public_url=kept.public_url,
                    workloads=woken.details.get("workloads", ""),
                    devcontainer=kept.devcontainer,
                )
                return "ready"
            if assignment.desired_state == "present" and assignment.kind == jobruns.PREPARE:
                runtime.prepare(convergence.prepared(session, assignment, urls=urls), progress=progress)
                convergence.complete_preparation(session, assignment)
                return "prepared"
            if assignment.desired_state == "present":
                target = convergence.prepared(
                    session,
                    assignment,
                    urls=urls,
                    backends=ports.backing(),
                    progress=progress,
                    store=ports.backup_store(),
                )
                applied = runtime.apply(target, progress=progress)
                if applied.workspace is not None:  # routed too: its app, its forwarded ports
                    target = dataclasses.replace(target, workspace=applied.workspace)
                progress.begin("publish")
                url = urls.publish(target)
                progress.finish("publish", url)
                completion = convergence.complete_run(
                    session,
                    assignment,
                    public_url=url,
                    workloads=applied.details.get("workloads", ""),
                    devcontainer=convergence.with_port_urls(
                        applied.details.get("devcontainer"), target, urls, url
                    ),
                )
                if completion is not None:
                    PROVISIONING_DURATION.labels(kind=completion.kind).observe(completion.seconds)
                return "ready"
            gone = runtime.destroy(environment_id, progress=progress)
            urls.unpublish(assignment.target)
            provisioning.release(
                session,
                environment_id,
                backends=ports.backing(),
                progress=progress,
                store=ports.backup_store(),
            )
            if not gone:  # the runtime finishes it: this worker goes on to other jobs
                delay = convergence.await_removal(session, assignment)
                return f"removing: looking again within {delay:.0f}s"
            convergence.complete_run(session, assignment, public_url=None)
            return "deleted"
        except EnvhubError as exc:
            _fail_step(session, progress, exc)
            if exc.retryable and convergence.retry_later(session, assignment, exc):
                return f"retrying: {exc.message}"
            convergence.fail_run(session, assignment, exc)
            return f"failed: {exc.code}"
        except Exception as exc:  # a bug or an unexpected outage: keep it visible, retry
            log.exception("converging environment %s failed", environment_id)
            error = RuntimeFailure(f"unexpected error: {exc}")
            _fail_step(session, progress, error)
            if not convergence.retry_later(session, assignment, error):
                convergence.fail_run(session, assignment, error)
            return "error"


def _fail_step(session: object, progress: convergence.RunProgress, error: EnvhubError) -> None:
    try:
        progress.session.rollback()
        key = progress.running_step()
        if key is not None:
            progress.fail(key, f"{error.code}: {error.message}")
    except Exception:  # recording the failure must not hide the failure
        log.exception("could not record a failed step")
