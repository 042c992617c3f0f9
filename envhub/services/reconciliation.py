"""The reconciler: re-drive whatever the database wants but the world lacks.

Runs periodically in the worker. Queues are a way to go fast, not a place where
work can be lost, so each tick looks at every live environment and:

* re-enqueues a queued run whose RQ job vanished (Redis flushed or restarted),
  or whose backoff has expired;
* abandons a running run whose heartbeat stopped (its worker was killed) and
  starts a fresh attempt;
* starts a run for an environment whose observed state lags its desired state
  with no run in flight (and for a ``ready`` one whose processes are gone);
* puts idle development environments to sleep and deletes those past their
  TTL (services/idleness.py);
* removes runtime leftovers that belong to no live environment (orphans), and
  what the URL provider published outside the runtime (a Cloudflare DNS record
  and tunnel rule) for no live environment, and managed-service instances
  (databases, redis-servers, buckets) that no environment holds.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select as sa_select
from sqlmodel import Session, col, func, select

from envhub.config import get_settings
from envhub.domain.phases import Phase, can_transition
from envhub.domain.principals import SYSTEM
from envhub.errors import EnvhubError
from envhub.integrations.backing.base import Backends
from envhub.integrations.object_store import ObjectStore
from envhub.models import Environment, JobRun, JobStatus, Project
from envhub.models.base import utcnow
from envhub.models.job import ACTIVE_JOB_STATUSES
from envhub.queue.base import JobQueue, QueueUnavailable
from envhub.runtime.base import Runtime, RuntimeState
from envhub.services import backups, idleness, jobruns, provisioning, pull_requests, releases, webhooks
from envhub.services.common import audit
from envhub.services.jobruns import RESYNC
from envhub.urls.base import UrlProvider

log = logging.getLogger(__name__)

# A queued run is only re-enqueued after this grace, so the reconciler never
# races a service that has just committed and is about to enqueue.
_ENQUEUE_GRACE = timedelta(seconds=2)


@dataclass(slots=True)
class ReconcileReport:
    requeued: list[int] = field(default_factory=list)
    restarted: list[int] = field(default_factory=list)
    started: list[int] = field(default_factory=list)
    orphans_removed: list[int] = field(default_factory=list)
    urls_withdrawn: list[int] = field(default_factory=list)  # public URLs of no live environment
    resynced: list[int] = field(default_factory=list)
    deliveries_redriven: list[int] = field(default_factory=list)  # GitHub webhook deliveries
    syncs_redriven: list[int] = field(default_factory=list)  # pull requests GitHub was not told about
    repositories_resynced: list[int] = field(default_factory=list)  # GitHub connections compared
    releases: dict[str, int] = field(default_factory=dict)  # renders re-driven, waiting releases checked
    services_removed: list[str] = field(default_factory=list)  # managed-service instances of no environment
    backups: dict[str, int] = field(default_factory=dict)  # backups and checks scheduled, re-driven, expired
    slept: list[int] = field(default_factory=list)  # idle development environments put to sleep
    expired: list[int] = field(default_factory=list)  # development environments past their TTL, deleted


class _NoProgress:
    def begin(self, key: str, detail: str = "") -> None: ...
    def finish(self, key: str, detail: str = "") -> None: ...
    def skip(self, key: str, detail: str = "") -> None: ...
    def heartbeat(self) -> None: ...


def reconcile(
    *,
    session: Session,
    queue: JobQueue,
    runtime: Runtime,
    urls: UrlProvider | None = None,
    backends: Backends | None = None,
    backup_store: ObjectStore | None = None,
) -> ReconcileReport:
    report = ReconcileReport()
    settings = get_settings()
    # List what the runtime and the URL provider have *before* reading the
    # database: anything created after these lines belongs to a row committed
    # before them, so it is never mistaken for an orphan.
    managed = runtime.managed_environments()
    published = _published(urls) if urls is not None and _sweep_due(settings.url_sweep_interval) else None
    now = utcnow()
    # Only what the decisions need, not whole rows (specs and all): a pass reads
    # every live environment, and most of them need nothing.
    live = [
        _Facts(*row)
        for row in session.execute(
            sa_select(
                col(Environment.id),
                col(Environment.phase),
                col(Environment.desired_state),
                col(Environment.desired_generation),
                col(Environment.observed_generation),
                col(Environment.condition),
            ).where(col(Environment.phase) != Phase.deleted)
        )
    ]
    live_ids = {facts.id for facts in live}
    # What each environment's decision needs, read for all of them at once: a pass
    # costs a few queries, not a few per environment.
    latest_runs = _latest_active_runs(session)
    applied = _last_applied(session) if runtime.pushes_status else {}

    # Decide for every environment first, then load and act on the few that need it.
    todo = [
        (facts.id, decision)
        for facts in live
        if (decision := _decide(facts, latest_runs.get(facts.id), runtime, applied, now))
    ]
    for environment_id, decision in todo:
        try:
            if decision == "requeue":
                seen = latest_runs[environment_id]
                if queue.is_pending(seen.rq_job_id or ""):
                    continue
                run = session.get(JobRun, seen.id)
                if run is not None and jobruns.dispatch(session, queue, run):
                    report.requeued.append(environment_id)
                continue
            environment = session.get(Environment, environment_id)
            if environment is None:  # deleted since
                continue
            if decision == "restart":
                run = session.get(JobRun, latest_runs[environment_id].id)
                if run is not None:
                    _restart_lost(session, queue, environment, run)
                    report.restarted.append(environment_id)
            elif decision == "start":
                if _still_lags(session, environment, runtime):
                    _start_run(session, queue, environment)
                    report.started.append(environment_id)
            elif decision == "resync":
                _start_run(session, queue, environment, kind=RESYNC)
                report.resynced.append(environment_id)
        except QueueUnavailable as exc:
            log.warning("reconciler: queue unavailable: %s", exc)
            break

    if _due(_last_idle_check, settings.idle_check_interval):
        try:
            idle = idleness.drive(session=session, queue=queue, now=now, busy=latest_runs.keys())
            report.slept, report.expired = idle.slept, idle.expired
        except QueueUnavailable as exc:
            log.warning("reconciler: queue unavailable for idle sleep: %s", exc)

    try:
        report.deliveries_redriven = webhooks.redrive_deliveries(session=session, queue=queue)
        report.syncs_redriven = pull_requests.redrive_syncs(session=session, queue=queue)
        report.repositories_resynced = pull_requests.resync_repositories(session=session, queue=queue)
        driven = releases.drive(session=session, queue=queue, checks=releases.GateChecks(runtime))
        report.releases = {what: count for what, count in driven.items() if count}
    except QueueUnavailable as exc:
        log.warning("reconciler: queue unavailable for webhook deliveries: %s", exc)

    for orphan in sorted(managed - live_ids):
        # Not waited for: the runtime finishes a long removal on its own, and a
        # terminating namespace is no longer listed as managed.
        gone = runtime.destroy(orphan, progress=_NoProgress())
        audit(
            session,
            SYSTEM,
            "environment.orphan_removed",
            target_type="environment",
            target_id=orphan,
            target=f"environment {orphan}",
            team_id=None,
            details={"removal": "done" if gone else "started"},
        )
        session.commit()
        report.orphans_removed.append(orphan)
    if urls is not None and published is not None:
        report.urls_withdrawn = _withdraw_orphans(session, urls, published - live_ids)
    if backends is not None:
        try:
            report.services_removed = provisioning.remove_orphans(session, backends)
        except EnvhubError as exc:  # a backend that cannot answer now is looked at again next pass
            log.warning("reconciler: managed services not checked: %s", exc.message)
    if (
        backends is not None
        and (backends.postgres is not None or backends.postgres_clusters is not None)
        and backup_store is not None
    ):
        try:
            driven = backups.drive(
                session=session, queue=queue, store=backup_store, clusters=backends.postgres_clusters
            )
            report.backups = {what: count for what, count in driven.items() if count}
        except (EnvhubError, QueueUnavailable) as exc:
            log.warning("reconciler: backups not driven: %s", exc)
    return report


@dataclass(frozen=True, slots=True)
class _Facts:
    """What the reconciler decides an environment's fate from (a few columns of its row)."""

    id: int
    phase: Phase
    desired_state: str
    desired_generation: int
    observed_generation: int
    condition: str | None


def _decide(
    environment: _Facts,
    run: _Run | None,
    runtime: Runtime,
    applied: dict[int, datetime | None],
    now: datetime,
) -> str | None:
    """What the pass should do about one environment, from what was read (no query, no commit).

    ``restart`` (a running run, maybe lost), ``requeue`` (a queued run due and
    settled, maybe lost from the queue), ``start`` (it lags what is desired),
    ``resync`` (a periodic re-apply is due) or None.
    """
    settings = get_settings()
    if run is not None and run.status is JobStatus.running:
        stale_before = now - timedelta(seconds=settings.job_stale_after)
        return "restart" if run.heartbeat_at is None or run.heartbeat_at < stale_before else None
    if run is not None:
        due = run.retry_at is None or run.retry_at <= now
        settled = (run.enqueued_at or run.created_at) < now - _ENQUEUE_GRACE
        return "requeue" if due and settled else None
    if _lags(environment, runtime):
        return "start"
    resync_before = now - timedelta(seconds=settings.resync_interval)
    if _resync_due(environment, runtime, applied.get(environment.id), resync_before):
        return "resync"
    return None


_last_sweep: list[float] = []  # when this process (the leader) last swept public URLs
_last_idle_check: list[float] = []  # when it last looked for idle and expired environments


def _sweep_due(interval: float) -> bool:
    return _due(_last_sweep, interval)


def _due(last: list[float], interval: float) -> bool:
    now = time.monotonic()
    if last and now - last[-1] < interval:
        return False
    last[:] = [now]
    return True


def _published(urls: UrlProvider) -> set[int] | None:
    try:
        return urls.published_environments()
    except EnvhubError as exc:  # Cloudflare down: the next tick sweeps
        log.warning("reconciler: could not list published URLs: %s", exc.message)
        return None


def _withdraw_orphans(session: Session, urls: UrlProvider, orphans: set[int]) -> list[int]:
    withdrawn: list[int] = []
    for orphan in sorted(orphans):
        try:
            urls.withdraw(orphan)
        except EnvhubError as exc:
            log.warning(
                "reconciler: could not withdraw the public URL of environment %s: %s", orphan, exc.message
            )
            continue
        audit(
            session,
            SYSTEM,
            "environment.url_orphan_removed",
            target_type="environment",
            target_id=orphan,
            target=f"environment {orphan}",
            team_id=None,
        )
        session.commit()
        withdrawn.append(orphan)
    return withdrawn


def _lags(environment: _Facts | Environment, runtime: Runtime) -> bool:
    if environment.phase is Phase.failed or environment.phase is Phase.sleeping:
        return False  # a person decides: redeploy or delete
    if environment.desired_generation == 0 and environment.desired_state == "present":
        return False  # a deployment environment before its first release: nothing is desired yet
    if environment.desired_state == "absent":
        return True
    if environment.observed_generation < environment.desired_generation:
        return True
    if environment.phase is Phase.ready:
        assert environment.id is not None
        if runtime.pushes_status:  # the runtime's watch recorded it; no polling
            return environment.condition == RuntimeState.absent.value
        return runtime.status(environment.id).state is RuntimeState.absent
    return environment.phase in (Phase.pending, Phase.provisioning, Phase.updating)


def _still_lags(session: Session, environment: Environment, runtime: Runtime) -> bool:
    """``_lags`` again on fresh rows: a run may have finished since ``live`` was read.

    Deciding on the stale row would start a second provision of an environment
    that just became ready.
    """
    assert environment.id is not None
    session.refresh(environment)
    return not jobruns.active_runs(session, environment.id) and _lags(environment, runtime)


@dataclass(frozen=True, slots=True)
class _Run:
    """What the reconciler decides from about a run in flight (the whole row is loaded to act)."""

    id: int
    environment_id: int | None
    status: JobStatus
    rq_job_id: str | None
    created_at: datetime
    enqueued_at: datetime | None
    retry_at: datetime | None
    heartbeat_at: datetime | None


def _latest_active_runs(session: Session) -> dict[int, _Run]:
    """Each environment's newest queued or running run (one query for all, a few columns)."""
    rows = session.execute(
        sa_select(
            col(JobRun.id),
            col(JobRun.environment_id),
            col(JobRun.status),
            col(JobRun.rq_job_id),
            col(JobRun.created_at),
            col(JobRun.enqueued_at),
            col(JobRun.retry_at),
            col(JobRun.heartbeat_at),
        )
        .where(col(JobRun.status).in_(ACTIVE_JOB_STATUSES))
        .order_by(col(JobRun.id))
    )
    runs = [_Run(*row) for row in rows]
    return {run.environment_id: run for run in runs if run.environment_id is not None}


def _last_applied(session: Session) -> dict[int, datetime | None]:
    """When each environment's newest succeeded run finished (one query for all)."""
    newest = (
        select(func.max(JobRun.id))
        .where(JobRun.status == JobStatus.succeeded)
        .group_by(col(JobRun.environment_id))
        .scalar_subquery()
    )
    rows = session.exec(select(JobRun.environment_id, JobRun.finished_at).where(col(JobRun.id).in_(newest)))
    return {environment_id: finished for environment_id, finished in rows if environment_id is not None}


def _resync_due(
    environment: _Facts, runtime: Runtime, last_applied: datetime | None, before: datetime
) -> bool:
    """A ready environment on a watched runtime is re-applied now and then."""
    if not runtime.pushes_status or environment.phase is not Phase.ready:
        return False
    return last_applied is not None and last_applied < before


def _start_run(
    session: Session, queue: JobQueue, environment: Environment, *, kind: str | None = None
) -> None:
    assert environment.id is not None
    project = session.get(Project, environment.project_id)
    assert project is not None
    if environment.desired_state == "present" and environment.phase is Phase.ready:
        # Drifted: it was ready but its processes are gone (machine restart, crash).
        environment.desired_generation += 1
        if can_transition(environment.phase, Phase.provisioning):
            environment.phase = Phase.provisioning
        environment.message = "Not running any more; starting it again"
        session.add(environment)
        audit(
            session,
            SYSTEM,
            "environment.drift_detected",
            target_type="environment",
            target_id=environment.id,
            target=f"{project.name}/{environment.name}",
            team_id=project.team_id,
            details={"reason": "runtime reports it absent"},
        )
    kind = kind or (jobruns.TEARDOWN if environment.desired_state == "absent" else "provision")
    run = jobruns.new_run(
        session, environment_id=environment.id, kind=kind, generation=environment.desired_generation
    )
    session.commit()
    jobruns.dispatch(session, queue, run)
    jobruns.announce(environment_id=environment.id, project_id=project.id)


def _restart_lost(session: Session, queue: JobQueue, environment: Environment, run: JobRun) -> None:
    assert environment.id is not None
    log.warning("job run %s lost its worker; re-driving environment %s", run.id, environment.id)
    attempts = run.attempts
    run.error = "worker stopped responding; re-driven by the reconciler"
    session.add(run)
    new = jobruns.new_run(
        session,
        environment_id=environment.id,
        kind=run.kind,
        generation=environment.desired_generation,
        attempts=attempts,
    )
    new.steps = [dict(step) for step in run.steps]
    session.commit()
    jobruns.dispatch(session, queue, new)
    jobruns.announce(environment_id=environment.id)
