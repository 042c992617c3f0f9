"""The periodic reconciler, run inside every worker; only the leader acts."""

from __future__ import annotations

import logging
import threading
import time

from redis import Redis
from redis.exceptions import RedisError

from envhub.config import get_settings
from envhub.errors import EnvhubError
from envhub.jobs.lease import LeaderLease, LeaseKeeper
from envhub.metrics import DRIFT_KINDS, RECONCILER_DRIFT, RECONCILER_PASS_DURATION
from envhub.models.db import session_scope
from envhub.runtime.base import RuntimeStatus
from envhub.services import ports
from envhub.services.observation import record_status
from envhub.services.reconciliation import ReconcileReport, reconcile

log = logging.getLogger(__name__)

LEADER_KEY = "envhub:reconciler:leader"


def lease_seconds(interval: float) -> float:
    """How long the leader's lease lasts: three ticks (a new leader takes over within it), 1.5 s at least."""
    return max(3 * interval, 1.5)


def reconcile_once() -> ReconcileReport:
    with session_scope() as session:
        report = reconcile(
            session=session,
            queue=ports.queue(),
            runtime=ports.runtime(),
            urls=ports.url_provider(),
            backends=ports.backing(),
            backup_store=ports.backup_store(),
        )
    drift = {kind: len(getattr(report, kind)) for kind in DRIFT_KINDS}
    for kind, found in drift.items():
        if found:
            RECONCILER_DRIFT.labels(kind=kind).inc(found)
    if any(drift.values()):
        log.info("reconciler: %s", report)
    return report


class ReconcilerThread(threading.Thread):
    """Runs :func:`reconcile_once` every interval while this worker lives.

    Several workers may run one each; a Redis lease (envhub/jobs/lease.py)
    makes one of them the leader, and only the leader acts. If that worker dies
    the lease expires and another takes over, so the reconciler needs no
    process of its own.
    """

    def __init__(self, connection: Redis, worker_name: str) -> None:
        super().__init__(name="envhub-reconciler", daemon=True)
        self.connection = connection
        self.worker_name = worker_name
        self.stopping = threading.Event()

    def run(self) -> None:
        for kind in DRIFT_KINDS:  # this process reports drift: every kind reads 0 from the start
            RECONCILER_DRIFT.labels(kind=kind)
        interval = get_settings().reconcile_interval
        lease = LeaderLease(self.connection, LEADER_KEY, self.worker_name, lease_seconds(interval))
        keeper = LeaseKeeper(lease)
        keeper.start()
        try:
            while not self.stopping.wait(interval):
                if keeper.lease.held():
                    self._tick()
        finally:
            keeper.stop()
            keeper.join(10)

    @staticmethod
    def _tick() -> None:
        started = time.perf_counter()
        outcome = "error"
        try:
            reconcile_once()
            outcome = "ok"
        except RedisError as exc:
            log.warning("reconciler: redis unavailable: %s", exc)
        except Exception as exc:
            if isinstance(exc, EnvhubError) and exc.retryable:
                # The runtime cannot be reached for now: one line per tick, not a traceback.
                log.warning("reconciler tick skipped: %s", exc.message)
            else:
                log.exception("reconciler tick failed")
        finally:
            RECONCILER_PASS_DURATION.labels(outcome=outcome).observe(time.perf_counter() - started)

    def stop(self) -> None:
        self.stopping.set()


class RuntimeWatchThread(threading.Thread):
    """Records the status changes the runtime pushes (``Runtime.watch``)."""

    def __init__(self) -> None:
        super().__init__(name="envhub-runtime-watch", daemon=True)
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                ports.runtime().watch(self._record, self.stopping)
            except Exception:
                log.exception("runtime watch failed; restarting it")
                self.stopping.wait(5)

    @staticmethod
    def _record(environment_id: int, status: RuntimeStatus) -> None:
        with session_scope() as session:
            record_status(session=session, environment_id=environment_id, status=status)

    def stop(self) -> None:
        self.stopping.set()
