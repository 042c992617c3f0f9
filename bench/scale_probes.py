"""What bench/scale.py measures besides REST latency: statements, the reconciler, the audit chain.

* SQL statements per API call: envhub's API app served in this process over
  real HTTP (Granian in a thread, as tests/support/servers.serve_asgi does),
  a ``before_cursor_execute`` listener on the database engine counting what
  each request sends.
* A reconciler pass (``services/reconciliation.reconcile``) with nothing
  drifted, against a runtime at envhub's own port that counts its calls (the
  stand-in for the apiserver: each call of the Kubernetes runtime here is at
  least one apiserver request), once as the Kubernetes runtime behaves (it
  pushes status from a watch) and once as the local runtime does (the
  reconciler polls each ready environment), then with a few environments
  drifted.
* Audit chain verification, the full check the product offers
  (``services/audit_chain.run_check``) and the incremental one after it,
  beside the floor: recomputing the same MACs over rows already in memory.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta

import httpx
from sqlalchemy import event, func, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bench.scale_world import World
from envhub.api.app import create_api
from envhub.domain.audit_chain import mac
from envhub.domain.phases import Phase
from envhub.domain.principals import SYSTEM, Principal
from envhub.models import AuditEvent, Environment, JobRun, JobStatus
from envhub.models.audit_chain import chain_key, event_fields
from envhub.models.base import utcnow
from envhub.models.job import ACTIVE_JOB_STATUSES
from envhub.runtime.base import RuntimeState, RuntimeStatus
from envhub.services import environment_views, project_views
from envhub.services.audit_chain import CheckMode, run_check
from envhub.services.reconciliation import reconcile
from tests.support.fakes import FakeQueue
from tests.support.servers import serve_asgi

# -- counting statements -------------------------------------------------------


@dataclass
class Statements:
    seen: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, _conn: object, _cursor: object, statement: str, *_args: object) -> None:
        with self.lock:
            self.seen.append(statement)

    def take(self) -> list[str]:
        with self.lock:
            taken, self.seen = self.seen, []
        return taken


@contextlib.contextmanager
def counting(engine: Engine) -> Iterator[Statements]:
    statements = Statements()
    event.listen(engine, "before_cursor_execute", statements)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", statements)


def statements_per_call(engine: Engine, token: str, calls: dict[str, str]) -> dict[str, int]:
    """SQL statements each GET in ``calls`` (name -> path) sends, served in this process.

    Each is asked twice first (caches warm, as in steady state), then counted once.
    """
    counts: dict[str, int] = {}
    with (
        counting(engine) as statements,
        serve_asgi(create_api()) as port,
        httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=120,
            trust_env=False,
        ) as http,
    ):
        for name, path in calls.items():
            for _ in range(2):
                http.get(path).raise_for_status()
            statements.take()
            http.get(path).raise_for_status()
            counts[name] = len(statements.take())
    return counts


def statements_per_page(engine: Engine, world: World) -> dict[str, int]:
    """Queries behind each dashboard page's data (the view its ``on_load`` reads), counted warm."""
    me = Principal(name="bench", user_id=world.user_id)
    project = world.projects[0]
    views: dict[str, Callable[[Session], object]] = {
        "page: projects (/)": lambda s: project_views.projects_overview(session=s, actor=me, limit=10),
        "page: a project's environments": lambda s: project_views.project_overview(
            session=s, actor=me, project_id=project, limit=10
        ),
        "page: all environments": lambda s: environment_views.visible_environments(
            session=s, actor=me, limit=25
        ),
    }
    counts: dict[str, int] = {}
    with counting(engine) as statements:
        for name, view in views.items():
            with Session(engine) as session:
                view(session)
            statements.take()
            with Session(engine) as session:
                view(session)
            counts[name] = len([s for s in statements.take() if s.lstrip().upper().startswith("SELECT")])
    return counts


# -- the reconciler ------------------------------------------------------------


class CountingRuntime:
    """A runtime at envhub's port that has every live environment running, and counts its calls."""

    name = "counting"
    provision_plan: tuple[tuple[str, str], ...] = ()
    teardown_plan: tuple[tuple[str, str], ...] = ()

    def __init__(self, managed: set[int], *, pushes_status: bool) -> None:
        self.managed = managed
        self.pushes_status = pushes_status
        self.calls: Counter[str] = Counter()

    def managed_environments(self) -> set[int]:
        self.calls["managed_environments"] += 1
        return set(self.managed)

    def status(self, environment_id: int) -> RuntimeStatus:
        self.calls["status"] += 1
        return RuntimeStatus(state=RuntimeState.ready)

    def destroy(self, environment_id: int, *, progress: object) -> None:
        self.calls["destroy"] += 1

    def __getattr__(self, name: str) -> object:  # anything else the pass asks for is counted and refused
        self.calls[name] += 1
        raise AttributeError(name)


class CountingQueue(FakeQueue):
    def __init__(self, pending: set[str]) -> None:
        super().__init__(pending=set(pending))
        self.calls: Counter[str] = Counter()

    def enqueue(self, function: str, *args: object, job_id: str) -> None:
        self.calls["enqueue"] += 1
        super().enqueue(function, *args, job_id=job_id)

    def is_pending(self, job_id: str) -> bool:
        self.calls["is_pending"] += 1
        return super().is_pending(job_id)


@dataclass
class Pass:
    label: str
    seconds: float
    statements: int
    runtime: Counter[str]
    queue: Counter[str]
    started: int  # runs the pass started (drift repaired)

    @property
    def runtime_calls(self) -> int:
        return sum(self.runtime.values())


def settle(engine: Engine) -> int:
    """Nothing drifted: every environment's last apply is recent (no periodic re-apply due).

    Returns the number of environments whose run is still in flight (their jobs are on the queue).
    """
    with Session(engine) as session:
        newest = (
            select(func.max(JobRun.id))
            .where(JobRun.status == JobStatus.succeeded)
            .group_by(col(JobRun.environment_id))
            .scalar_subquery()
        )
        session.execute(
            update(JobRun)
            .where(col(JobRun.id).in_(newest))
            .values(finished_at=utcnow() - timedelta(minutes=1))
        )
        session.commit()
        return int(
            session.exec(select(func.count()).where(col(JobRun.status).in_(ACTIVE_JOB_STATUSES))).one()
        )


def reconciler_pass(engine: Engine, label: str, *, pushes_status: bool) -> Pass:
    with Session(engine) as session:
        live = set(session.exec(select(Environment.id).where(Environment.phase != Phase.deleted)))
        in_flight = set(
            session.exec(select(JobRun.rq_job_id).where(col(JobRun.status).in_(ACTIVE_JOB_STATUSES)))
        )
    runtime = CountingRuntime({i for i in live if i is not None}, pushes_status=pushes_status)
    queue = CountingQueue({job for job in in_flight if job})
    with counting(engine) as statements, Session(engine) as session:
        started = time.perf_counter()
        report = reconcile(session=session, queue=queue, runtime=runtime)  # type: ignore[arg-type]
        seconds = time.perf_counter() - started
    return Pass(label, seconds, len(statements.seen), runtime.calls, queue.calls, len(report.started))


def drift(engine: Engine, count: int) -> list[int]:
    """``count`` ready environments the runtime's watch saw vanish (condition ``absent``)."""
    with Session(engine) as session:
        chosen = list(
            session.exec(
                select(Environment.id)
                .where(Environment.phase == Phase.ready)
                .order_by(col(Environment.id))
                .limit(count)
            )
        )
        session.execute(
            update(Environment)
            .where(col(Environment.id).in_(chosen))
            .values(condition=RuntimeState.absent.value)
        )
        session.commit()
    return [i for i in chosen if i is not None]


# -- the audit chain -----------------------------------------------------------


@dataclass
class ChainTimes:
    events: int
    full_seconds: float
    incremental_seconds: float
    incremental_events: int
    mac_floor_seconds: float  # the same MACs over rows already in memory
    ok: bool


def chain_times(engine: Engine) -> ChainTimes:
    with Session(engine) as session:
        started = time.perf_counter()
        full = run_check(session, actor=SYSTEM, mode=CheckMode.full)
        full_seconds = time.perf_counter() - started
    with Session(engine) as session:
        started = time.perf_counter()
        incremental = run_check(session, actor=SYSTEM, mode=CheckMode.incremental)
        incremental_seconds = time.perf_counter() - started
    with Session(engine) as session:
        rows = list(session.exec(select(AuditEvent).order_by(col(AuditEvent.seq))))
    key = chain_key()
    started = time.perf_counter()
    for row in rows:
        mac(key, event_fields(row), row.prev_hash or "")
    floor = time.perf_counter() - started
    return ChainTimes(
        events=full.checked,
        full_seconds=full_seconds,
        incremental_seconds=incremental_seconds,
        incremental_events=incremental.checked,
        mac_floor_seconds=floor * full.checked / max(1, len(rows)),
        ok=full.ok and incremental.ok,
    )
