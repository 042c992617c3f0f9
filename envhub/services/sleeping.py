"""Sleep, wake and pin: a development environment that nobody uses stops costing anything.

The use cases record intent (a ``sleep`` or ``wake`` JobRun) and audit it; the
converge job makes it real through ``Runtime.sleep`` and ``Runtime.wake``, and
:func:`complete_sleep` records the end. The phase is the source of truth:
``ready`` until the processes have stopped, then ``sleeping``; a wake moves it
to ``provisioning`` at once and to ``ready`` when the app answers. A worker
killed half-way leaves a running run whose heartbeat stops; the reconciler
re-drives it, and both runtime calls are idempotent, so it converges.

Who may: whoever may redeploy the environment (the same right to change what
runs), and the system (the reconciler's idle sleep, a visit to its URL).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from sqlmodel import Session

from envhub.domain.phases import Phase
from envhub.domain.policy import Action
from envhub.domain.principals import SYSTEM, Principal
from envhub.domain.specs import EnvironmentKind
from envhub.errors import EnvironmentWaking, InvalidTransition
from envhub.models import Environment, JobRun, JobStatus, Project
from envhub.models.base import utcnow
from envhub.queue.base import JobQueue
from envhub.services import jobruns
from envhub.services.common import AuditTarget, audit, audited, authorize_environment
from envhub.services.convergence import (
    Assignment,
    finish_superseded,
    project_and_team,
    set_phase,
    still_current,
)
from envhub.services.environments import get_environment

WAKING_MESSAGE = "Waking up"


def _target(session: Session, environment: Environment, target: AuditTarget) -> Project:
    project = session.get(Project, environment.project_id)
    assert project is not None
    target.name, target.team_id = f"{project.name}/{environment.name}", project.team_id
    return project


def _active_kind(session: Session, environment_id: int) -> str | None:
    runs = jobruns.active_runs(session, environment_id)
    return runs[-1].kind if runs else None


def is_waking(session: Session, environment: Environment) -> bool:
    """Asleep and asked to wake, or on its way up from sleep."""
    assert environment.id is not None
    return environment.phase is Phase.provisioning and _active_kind(session, environment.id) == jobruns.WAKE


def sleep_environment(
    *, session: Session, actor: Principal, queue: JobQueue, environment_id: int, reason: str = "asked"
) -> Environment:
    """Put a ready development environment to sleep now (asking again is no error).

    ``reason`` is recorded: ``asked`` (a person or agent), ``idle`` (the reconciler).
    """
    target = AuditTarget("environment", id=environment_id)
    run: JobRun | None = None
    with audited(session, actor, "environment.sleep", target):
        environment = get_environment(session=session, actor=actor, environment_id=environment_id)
        _target(session, environment, target)
        authorize_environment(session, actor, environment, Action.environment_redeploy, what="environment")
        if environment.kind is not EnvironmentKind.development:
            raise InvalidTransition(
                f"{environment.name} is a deployment environment; only development environments sleep",
                hint="Deployment environments run a team's real workloads and stay up.",
            )
        if environment.phase is Phase.sleeping or _active_kind(session, environment_id) == jobruns.SLEEP:
            target.record = False
            return environment
        if environment.phase is not Phase.ready or environment.desired_state != "present":
            raise InvalidTransition(
                f"cannot put an environment that is {environment.phase.value} to sleep",
                hint="Only a ready environment can sleep; wait until it is ready.",
                details={"phase": environment.phase.value},
            )
        run = jobruns.new_run(
            session,
            environment_id=environment_id,
            kind=jobruns.SLEEP,
            generation=environment.desired_generation,
        )
        environment.message = "Going to sleep"
        environment.updated_at = utcnow()
        session.add(environment)
        target.details = {"reason": reason, "job_run": run.id}
    if run is not None:
        jobruns.dispatch(session, queue, run)
        jobruns.announce(environment_id=environment_id, project_id=environment.project_id)
    return environment


def start_wake(session: Session, environment: Environment) -> JobRun | None:
    """Record a wake of a sleeping environment (caller commits, then dispatches); None when one is
    already on its way or it is not asleep."""
    assert environment.id is not None
    if environment.phase is not Phase.sleeping or _active_kind(session, environment.id) == jobruns.WAKE:
        return None
    run = jobruns.new_run(
        session, environment_id=environment.id, kind=jobruns.WAKE, generation=environment.desired_generation
    )
    environment.message = WAKING_MESSAGE
    environment.last_active_at = utcnow()  # waking is activity: it is not put back to sleep at once
    environment.updated_at = utcnow()
    session.add(environment)
    return run


def wake_environment(
    *, session: Session, actor: Principal, queue: JobQueue, environment_id: int, reason: str = "asked"
) -> Environment:
    """Wake a sleeping environment (waking one awake or already waking is no error).

    ``reason`` is recorded: ``asked``, ``visit`` (a request to its URL), ``command``
    (a terminal, command or file operation on it).
    """
    target = AuditTarget("environment", id=environment_id)
    run: JobRun | None = None
    with audited(session, actor, "environment.wake", target):
        environment = get_environment(session=session, actor=actor, environment_id=environment_id)
        _target(session, environment, target)
        authorize_environment(session, actor, environment, Action.environment_redeploy, what="environment")
        if environment.phase is Phase.sleeping:
            run = start_wake(session, environment)
        if run is None:
            if environment.phase in (Phase.ready, Phase.updating, Phase.sleeping) or is_waking(
                session, environment
            ):
                target.record = False
                return environment
            raise InvalidTransition(
                f"cannot wake an environment that is {environment.phase.value}",
                details={"phase": environment.phase.value},
            )
        target.details = {"reason": reason, "job_run": run.id}
    dispatch(session, queue, run)
    return environment


def dispatch(session: Session, queue: JobQueue, run: JobRun) -> None:
    """Hand a committed run to the queue (the reconciler re-drives it if the queue is away)."""
    jobruns.dispatch(session, queue, run)
    jobruns.announce(environment_id=run.environment_id)


def wake_on_visit(*, session: Session, queue: JobQueue, environment_id: int) -> bool:
    """A request reached a sleeping environment's URL: wake it (as envhub). True when a wake started.

    The gateway calls this only after it let the visitor in (a project whose URLs
    need sign-in has checked the visitor's pass first).
    """
    environment = session.get(Environment, environment_id)
    if environment is None or environment.phase is not Phase.sleeping:
        return False
    wake_environment(
        session=session, actor=SYSTEM, queue=queue, environment_id=environment_id, reason="visit"
    )
    return True


def require_awake(
    session: Session, actor: Principal, environment: Environment, queue: Callable[[], JobQueue]
) -> None:
    """Raise ``environment_waking`` for a sleeping (now woken) or waking environment.

    Terminal, command, file and process operations call it: the first one on a
    sleeping environment wakes it, and every one answers with a retryable code
    until it is ready. The wake is committed before the error unwinds the caller.
    ``queue`` is asked for only when a wake is started.
    """
    assert environment.id is not None
    if environment.phase is Phase.sleeping:
        project = session.get(Project, environment.project_id)
        assert project is not None
        run = start_wake(session, environment)
        if run is not None:
            audit(
                session,
                actor,
                "environment.wake",
                target_type="environment",
                target_id=environment.id,
                target=f"{project.name}/{environment.name}",
                team_id=project.team_id,
                details={"reason": "command", "job_run": run.id},
            )
            session.commit()
            dispatch(session, queue(), run)
    elif not is_waking(session, environment):
        return
    raise EnvironmentWaking(
        f"{environment.name} was asleep and is waking up",
        details={"environment_id": environment.id, "phase": environment.phase.value},
    )


def pin_environment(
    *, session: Session, actor: Principal, environment_id: int, pinned: bool = True
) -> Environment:
    """Pin (or unpin) an environment: pinned, it neither sleeps when idle nor expires."""
    action = "environment.pin" if pinned else "environment.unpin"
    target = AuditTarget("environment", id=environment_id)
    with audited(session, actor, action, target):
        environment = get_environment(session=session, actor=actor, environment_id=environment_id)
        _target(session, environment, target)
        authorize_environment(session, actor, environment, Action.environment_redeploy, what="environment")
        if environment.phase is Phase.deleted:
            raise InvalidTransition("cannot pin a deleted environment")
        if environment.pinned == pinned:
            target.record = False
            return environment
        environment.pinned = pinned
        environment.updated_at = utcnow()
        if not pinned:
            # The idle clock starts now, not at the last activity before the pin.
            environment.last_active_at = utcnow()
        session.add(environment)
    jobruns.announce(environment_id=environment_id, project_id=environment.project_id)
    return environment


def complete_sleep(session: Session, assignment: Assignment, done: str) -> bool:
    """The job side: the runtime stopped everything; the run succeeds and the phase is ``sleeping``.

    False when a newer change superseded the run meanwhile (a wake, a redeploy, a delete).
    """
    session.expire_all()
    current = still_current(session, assignment)
    if current is None:
        finish_superseded(session, assignment)
        return False
    run, environment = current
    project, team = project_and_team(session, environment)
    run.status, run.finished_at, run.error, run.error_code = JobStatus.succeeded, utcnow(), None, None
    session.add(run)
    set_phase(
        session,
        environment,
        Phase.sleeping,
        team_id=team.id or 0,
        target=f"{project.name}/{environment.name}",
        message=f"Asleep: {done}",
    )
    session.commit()
    jobruns.announce(environment_id=environment.id, project_id=project.id)
    return True


@dataclass(frozen=True, slots=True)
class Kept:
    """What a wake leaves as the deploy before sleep recorded it."""

    public_url: str | None
    devcontainer: str | None  # JSON, as ``convergence.complete_run`` takes it


def kept_while_asleep(session: Session, environment_id: int) -> Kept:
    environment = session.get(Environment, environment_id)
    if environment is None:
        return Kept(None, None)
    devcontainer = json.dumps(environment.devcontainer) if environment.devcontainer else None
    return Kept(environment.public_url, devcontainer)
