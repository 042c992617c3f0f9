"""What programs ask of an environment beyond the dashboard's clicks.

A program cannot watch a page: it creates and then waits, asks for the
status as data, and follows logs for a while. These use cases answer that,
over the same use cases and view models as the dashboard:

* :func:`create_environment_once`: create, honouring an idempotency key, and
  say which job does the work;
* :func:`environment_status`: the facts, the latest job with its steps, and
  what the caller may do;
* :func:`wait_for_environment`: block (bounded) until a phase is reached or
  cannot be any more;
* :func:`follow_logs`: new log lines for a bounded time, then stop.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, TypedDict

from sqlmodel import Session

from envhub.domain.phases import Phase
from envhub.domain.principals import Principal
from envhub.queue.base import JobQueue
from envhub.runtime.base import Runtime
from envhub.services import environments, idempotency, logs
from envhub.services.environment_views import (
    EMPTY_RUN,
    EnvironmentDetail,
    EnvironmentPermissions,
    RunView,
    StepRow,
    environment_detail,
    permissions,
    run_view,
    step_rows,
)
from envhub.services.units import read_only

# The longest a caller is held by one wait, and how often the database is read meanwhile.
MAX_WAIT = 30.0
POLL_EVERY = 0.5
# The longest one log-following request streams.
MAX_FOLLOW = 300.0


class StartedJob(TypedDict):
    """An environment a request changed, and the job that carries the change out."""

    environment: EnvironmentDetail
    job_id: int | None
    replayed: bool  # answered from an earlier request with the same idempotency key


class EnvironmentStatus(TypedDict):
    detail: EnvironmentDetail
    run: RunView
    steps: list[StepRow]
    permissions: EnvironmentPermissions


class WaitResult(TypedDict):
    reached: bool  # the environment is in the phase asked for
    settled: bool  # it is in a phase it will not leave by itself (ready, failed, deleted...)
    waited_seconds: float
    environment: EnvironmentDetail


def _latest_job(session: Session, actor: Principal, environment_id: int) -> int | None:
    run = environments.latest_run(session=session, actor=actor, environment_id=environment_id)
    return run.id if run is not None else None


def create_environment_once(
    *,
    session: Session,
    actor: Principal,
    queue: JobQueue,
    project_id: int,
    name: str | None = None,
    kind: str = "development",
    overrides: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    request: Any = None,
) -> StartedJob:
    """Create an environment; with ``idempotency_key``, at most once per key.

    ``request`` is what identifies the request's content for the key (its
    JSON body): the same key with another content is refused.
    """
    claim = None
    if idempotency_key is not None:
        claim = idempotency.claim(actor, idempotency_key, f"environment.create project={project_id}", request)
        made = idempotency.replay(session, claim)
        session.commit()  # the sweep of the key's expired record
        if made is not None and made.environment_id is not None:
            environment = environments.get_environment(
                session=session, actor=actor, environment_id=made.environment_id
            )
            return StartedJob(
                environment=environment_detail(environment), job_id=made.job_run_id, replayed=True
            )
    environment = environments.create_environment(
        session=session,
        actor=actor,
        queue=queue,
        project_id=project_id,
        name=name,
        kind=kind,
        overrides=overrides,
        idempotency_claim=claim,
    )
    assert environment.id is not None
    return StartedJob(
        environment=environment_detail(environment),
        job_id=_latest_job(session, actor, environment.id),
        replayed=False,
    )


def redeploy(*, session: Session, actor: Principal, queue: JobQueue, environment_id: int) -> StartedJob:
    environment = environments.redeploy_environment(
        session=session, actor=actor, queue=queue, environment_id=environment_id
    )
    return StartedJob(
        environment=environment_detail(environment),
        job_id=_latest_job(session, actor, environment_id),
        replayed=False,
    )


def update(
    *, session: Session, actor: Principal, queue: JobQueue, environment_id: int, changes: dict[str, Any]
) -> StartedJob:
    """Change the environment's ref, command or variables; the redeploy that applies them is the job."""
    environment = environments.update_environment(
        session=session, actor=actor, queue=queue, environment_id=environment_id, changes=changes
    )
    return StartedJob(
        environment=environment_detail(environment),
        job_id=_latest_job(session, actor, environment_id),
        replayed=False,
    )


def delete(*, session: Session, actor: Principal, queue: JobQueue, environment_id: int) -> StartedJob:
    environment = environments.delete_environment(
        session=session, actor=actor, queue=queue, environment_id=environment_id
    )
    return StartedJob(
        environment=environment_detail(environment),
        job_id=_latest_job(session, actor, environment_id),
        replayed=False,
    )


def environment_status(*, session: Session, actor: Principal, environment_id: int) -> EnvironmentStatus:
    environment, _project, allowed = environments.environment_context(
        session=session, actor=actor, environment_id=environment_id
    )
    run = environments.latest_run(session=session, actor=actor, environment_id=environment_id)
    return EnvironmentStatus(
        detail=environment_detail(environment),
        run=run_view(run) if run else EMPTY_RUN,
        steps=step_rows(run) if run else [],
        permissions=permissions(environment, allowed),
    )


# Where an environment rests until someone acts; waiting longer changes nothing.
_SETTLED = frozenset({Phase.ready, Phase.failed, Phase.sleeping, Phase.deleted})


def wait_for_environment(
    *, actor: Principal, environment_id: int, phase: Phase = Phase.ready, timeout: float = MAX_WAIT
) -> WaitResult:
    """Wait until the environment is in ``phase``, has settled elsewhere, or ``timeout`` passed.

    Each look is its own short read-only unit of work (no lock is held while
    waiting), authorized like any read: a share revoked meanwhile ends the wait
    with ``not_found``.
    """
    started = time.monotonic()
    deadline = started + max(0.0, min(timeout, MAX_WAIT))
    while True:
        with read_only() as session:
            environment = environments.get_environment(
                session=session, actor=actor, environment_id=environment_id
            )
            reached = environment.phase is phase
            settled = environment.phase in _SETTLED and environment.desired_state == (
                "absent" if environment.phase is Phase.deleted else "present"
            )
            detail = environment_detail(environment)
        now = time.monotonic()
        if reached or settled or now >= deadline:
            return WaitResult(
                reached=reached,
                settled=settled,
                waited_seconds=round(now - started, 3),
                environment=detail,
            )
        time.sleep(min(POLL_EVERY, deadline - now))


def follow_logs(
    *,
    session: Session,
    actor: Principal,
    runtime: Runtime,
    environment_id: int,
    tail: int = 50,
    container: str | None = None,
    seconds: float = 60.0,
) -> Iterator[str]:
    """The last ``tail`` lines, then new ones until ``seconds`` have passed (at most :data:`MAX_FOLLOW`).

    Authorizes now, before the first line. The runtime ends the follow on time
    even while nothing is printed (``until``), so no reader waits past it.
    """
    until = time.monotonic() + max(0.0, min(seconds, MAX_FOLLOW))
    return logs.follow_environment_logs(
        session=session,
        actor=actor,
        runtime=runtime,
        environment_id=environment_id,
        tail=tail,
        container=container,
        until=until,
    )
