"""What programs ask of an environment beyond the dashboard's clicks.

A program cannot watch a page: it creates and then waits, asks for the
status as data, and follows logs for a while. These use cases answer that,
over the same use cases and view models as the dashboard (REST and MCP call
these; the status is ``environment_views.environment_status``, the wait
``waiting.wait_for_environment``):

* :func:`create_environment_once`: create, honouring an idempotency key, and
  say which job does the work; :func:`update`, :func:`redeploy` and
  :func:`delete` say it too;
* :func:`sleep`, :func:`wake` and :func:`pin` (services/sleeping.py);
* :func:`follow_logs`: new log lines for a bounded time, then stop.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, TypedDict

from sqlmodel import Session

from envhub.domain.principals import Principal
from envhub.domain.specs import Trigger
from envhub.queue.base import JobQueue
from envhub.runtime.base import Runtime
from envhub.services import environments, idempotency, logs, sleeping
from envhub.services.environment_views import EnvironmentDetail, environment_detail
from envhub.services.sleep_views import IdleView, idle_view

# The longest one log-following request streams.
MAX_FOLLOW = 300.0


class StartedJob(TypedDict):
    """An environment a request changed, and the job that carries the change out."""

    environment: EnvironmentDetail
    job_id: int | None
    replayed: bool  # answered from an earlier request with the same idempotency key


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
    trigger: Trigger | None = None,
    idempotency_key: str | None = None,
    request: Any = None,
) -> StartedJob:
    """Create an environment; with ``idempotency_key``, at most once per key.

    ``request`` is what identifies the request's content for the key (its
    JSON body, a tool's arguments): the same key with another content is
    refused. ``trigger`` as in ``environments.create_environment``.
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
        trigger=trigger,
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


def delete(
    *, session: Session, actor: Principal, queue: JobQueue, environment_id: int, confirm: str | None = None
) -> StartedJob:
    environment = environments.delete_environment(
        session=session, actor=actor, queue=queue, environment_id=environment_id, confirm=confirm
    )
    return StartedJob(
        environment=environment_detail(environment),
        job_id=_latest_job(session, actor, environment_id),
        replayed=False,
    )


def sleep(*, session: Session, actor: Principal, queue: JobQueue, environment_id: int) -> StartedJob:
    """Put it to sleep now; the job stops what runs (asleep already: nothing to do)."""
    environment = sleeping.sleep_environment(
        session=session, actor=actor, queue=queue, environment_id=environment_id
    )
    return StartedJob(
        environment=environment_detail(environment),
        job_id=_latest_job(session, actor, environment_id),
        replayed=False,
    )


def wake(*, session: Session, actor: Principal, queue: JobQueue, environment_id: int) -> StartedJob:
    """Wake it now; the job starts it again from its workspace (awake already: nothing to do)."""
    environment = sleeping.wake_environment(
        session=session, actor=actor, queue=queue, environment_id=environment_id
    )
    return StartedJob(
        environment=environment_detail(environment),
        job_id=_latest_job(session, actor, environment_id),
        replayed=False,
    )


def pin(*, session: Session, actor: Principal, environment_id: int, pinned: bool) -> IdleView:
    """Pin or unpin it; answers how it now stands with sleep and its TTL."""
    sleeping.pin_environment(session=session, actor=actor, environment_id=environment_id, pinned=pinned)
    environment, project, allowed = environments.environment_context(
        session=session, actor=actor, environment_id=environment_id
    )
    return idle_view(environment, project, allowed)


def follow_logs(
    *,
    session: Session,
    actor: Principal,
    runtime: Runtime,
    environment_id: int,
    tail: int = 50,
    container: str | None = None,
    seconds: float = 60.0,
    chosen: logs.LogFilter = logs.EVERY_LINE,
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
        chosen=chosen,
    )
