"""Environments: create, list, read, redeploy, delete.

These only record intent (spec, desired generation, a JobRun) and audit it;
``jobs/`` makes it real. See ``services/convergence.py`` for the job side.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, or_
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from envhub.config import get_settings
from envhub.domain.naming import generate_environment_name, validate_label
from envhub.domain.phases import Phase, is_deletable, is_redeployable, transition
from envhub.domain.policy import Action
from envhub.domain.principals import Principal, PrincipalType
from envhub.domain.repos import require_allowed
from envhub.domain.specs import EnvironmentKind, Trigger, merge_spec, parse_spec
from envhub.errors import Conflict, InvalidTransition, NotFound, ValidationFailed
from envhub.models import Environment, JobRun, Project, User
from envhub.models.base import utcnow
from envhub.queue.base import JobQueue
from envhub.services import cursors, idempotency, jobruns
from envhub.services.access import allowed_environment_actions, owner_confirms
from envhub.services.common import (
    AuditTarget,
    Page,
    audited,
    authorize,
    authorize_environment,
    clamp_page,
    contains,
)
from envhub.services.projects import get_project, project_defaults


def _live_names(session: Session, project_id: int) -> set[str]:
    rows = session.exec(
        select(Environment.name).where(
            Environment.project_id == project_id, Environment.phase != Phase.deleted
        )
    )
    return set(rows)


def suggest_environment_name(*, session: Session, actor: Principal, project_id: int) -> str:
    get_project(session=session, actor=actor, project_id=project_id)
    return generate_environment_name(_live_names(session, project_id))


def create_environment(
    *,
    session: Session,
    actor: Principal,
    queue: JobQueue,
    project_id: int,
    name: str | None = None,
    kind: EnvironmentKind | str = EnvironmentKind.development,
    overrides: dict[str, Any] | None = None,
    trigger: Trigger | str | None = None,
    idempotency_claim: idempotency.Claim | None = None,
    also: Callable[[Session, Environment], None] | None = None,
) -> Environment:
    """Record a new environment and queue its provisioning.

    ``also`` records more in the same transaction, before the job is queued
    (a restore of a backup into the new environment's database).

    With ``idempotency_claim`` the key is recorded in the same transaction
    (``services/idempotency.py``): a request made again with it is answered
    by ``create_environment_once`` without a second environment.

    ``trigger`` says what made it; by default an agent token's work is ``agent``
    and anything else ``manual``. Faces that act for agents (MCP) pass ``agent``.
    """
    target = AuditTarget("environment", name=name or "")
    with audited(session, actor, "environment.create", target):
        project = get_project(session=session, actor=actor, project_id=project_id)
        target.team_id = project.team_id
        authorize(session, actor, project.team_id, Action.environment_create, what="project")
        try:
            kind = EnvironmentKind(kind)
        except ValueError as exc:
            raise ValidationFailed(
                f"kind must be one of {', '.join(k.value for k in EnvironmentKind)}",
                details={"field": "kind"},
            ) from exc
        if trigger is None:
            trigger = Trigger.agent if actor.type is PrincipalType.agent else Trigger.manual
        try:
            trigger = Trigger(trigger)
        except ValueError as exc:
            raise ValidationFailed(
                f"trigger must be one of {', '.join(t.value for t in Trigger)}",
                details={"field": "trigger"},
            ) from exc
        taken = _live_names(session, project_id)
        name = name or generate_environment_name(taken)
        target.name = name
        validate_label(name, field="environment name")
        if name in taken:
            raise Conflict(
                f"an environment named {name!r} already exists in {project.name}", details={"field": "name"}
            )
        spec = merge_spec(project_defaults(project), overrides or {})
        require_allowed(spec.repo_url, allow_local=get_settings().allow_local_repos)
        environment = Environment(
            project_id=project_id,
            name=name,
            kind=kind,
            trigger=trigger,
            phase=Phase.pending,
            message="Waiting for a worker",
            spec=spec.model_dump(),
            desired_generation=1,
            created_by_id=actor.user_id,
        )
        session.add(environment)
        try:
            session.flush()
        except IntegrityError as exc:
            raise Conflict(f"an environment named {name!r} already exists in {project.name}") from exc
        assert environment.id is not None
        target.id = environment.id
        run = jobruns.new_run(session, environment_id=environment.id, kind="provision", generation=1)
        if also is not None:
            also(session, environment)
        if idempotency_claim is not None:
            try:
                idempotency.remember(session, idempotency_claim, idempotency.Made(environment.id, run.id))
            except IntegrityError as exc:  # the same key, sent twice at once: the other one won
                raise Conflict(
                    "a request with this Idempotency-Key is being handled",
                    hint="Send it again in a moment to get the first request's answer.",
                    details={"field": "Idempotency-Key"},
                ) from exc
        target.id = environment.id
        target.name = f"{project.name}/{name}"
        target.team_id = project.team_id
        target.details = {
            "kind": kind.value,
            "trigger": trigger.value,
            "job_run": run.id,
            "spec": spec.model_dump(),
        }
    jobruns.dispatch(session, queue, run)
    jobruns.announce(environment_id=environment.id, project_id=project_id)
    return environment


def get_environment(*, session: Session, actor: Principal, environment_id: int) -> Environment:
    environment = session.get(Environment, environment_id)
    if environment is None:
        raise NotFound(
            f"environment {environment_id} was not found", details={"environment_id": environment_id}
        )
    authorize_environment(
        session, actor, environment, Action.environment_read, what=f"environment {environment_id}"
    )
    return environment


def environment_context(
    *, session: Session, actor: Principal, environment_id: int
) -> tuple[Environment, Project, frozenset[Action]]:
    """The environment, its project, and what the actor may do to it (for showing controls).

    Works for anyone who can read the environment, including people it is
    shared with who cannot see the rest of the project.
    """
    environment = get_environment(session=session, actor=actor, environment_id=environment_id)
    project = session.get(Project, environment.project_id)
    assert project is not None
    return environment, project, allowed_environment_actions(session, actor, environment, project.team_id)


def list_environments(
    *,
    session: Session,
    actor: Principal,
    project_id: int,
    offset: int = 0,
    limit: int = 20,
    include_deleted: bool = False,
    phases: Collection[Phase] = (),
    kind: EnvironmentKind | None = None,
    trigger: Trigger | None = None,
    search: str = "",
    cursor: str | None = None,
) -> Page[tuple[Environment, str | None]]:
    """Environments of a project, newest first, with their creator's name, filtered.

    One list for every face, paged two ways: by ``offset`` (the dashboard's
    numbered pages) or after ``cursor`` (programs walking a list that changes
    meanwhile: ``next_cursor`` continues it without repeating or skipping a
    row; ``offset`` is then ignored). Deleted environments only with
    ``include_deleted`` or when ``phases`` names them. The key is
    (created_at, id), both descending: the id breaks ties.
    """
    get_project(session=session, actor=actor, project_id=project_id)
    offset, limit = clamp_page(offset, limit)
    where: list[ColumnElement[bool] | bool] = [Environment.project_id == project_id]
    if not include_deleted and Phase.deleted not in phases:
        where.append(Environment.phase != Phase.deleted)
    if phases:
        where.append(col(Environment.phase).in_(list(phases)))
    if kind is not None:
        where.append(Environment.kind == kind)
    if trigger is not None:
        where.append(Environment.trigger == trigger)
    if search.strip():
        where.append(func.lower(col(Environment.name)).like(contains(search.strip()), escape="\\"))
    total = session.exec(select(func.count()).select_from(Environment).where(*where)).one()
    if cursor:
        stamp, after = cursors.decode(cursor, "environments", (datetime, int))
        created = datetime.fromisoformat(str(stamp))
        where.append(
            or_(
                col(Environment.created_at) < created,
                (col(Environment.created_at) == created) & (col(Environment.id) < after),
            )
        )
        offset = 0
    rows = list(
        session.exec(
            select(Environment, User.username)
            .outerjoin(User, col(User.id) == Environment.created_by_id)
            .where(*where)
            .order_by(col(Environment.created_at).desc(), col(Environment.id).desc())
            .offset(offset)
            .limit(limit + 1)
        )
    )
    last = rows[limit - 1][0] if len(rows) > limit else None
    return Page(
        items=[(env, creator) for env, creator in rows[:limit]],
        total=int(total),
        offset=offset,
        limit=limit,
        next_cursor=cursors.encode("environments", (last.created_at.isoformat(), last.id or 0))
        if last
        else None,
    )


def redeploy_environment(
    *, session: Session, actor: Principal, queue: JobQueue, environment_id: int
) -> Environment:
    return _redeploy(session, actor, queue, environment_id, action="environment.redeploy")


def update_environment(
    *,
    session: Session,
    actor: Principal,
    queue: JobQueue,
    environment_id: int,
    changes: dict[str, Any],
    not_before: datetime | None = None,
    while_pending: bool = False,
) -> Environment:
    """Change an environment's ``ref``, ``command`` or ``env`` (variables added or changed), and redeploy.

    A changed spec only takes effect through a deployment, so this is a
    redeploy with the changes (the same right, the same phases it may start
    from). ``while_pending`` also lets a pending one change before its first
    deployment starts (a pull request pushed to before its environment was made).

    ``not_before`` holds the deployment back until then (the reconciler starts
    it): pushes that follow each other within that time make one deployment,
    of the last one, since each change supersedes the run before it.
    """
    unknown = set(changes) - {"ref", "command", "env"}
    if unknown:
        raise ValidationFailed(
            f"cannot change {', '.join(sorted(unknown))}", details={"fields": sorted(unknown)}
        )
    return _redeploy(
        session,
        actor,
        queue,
        environment_id,
        action="environment.update",
        changes=changes,
        not_before=not_before,
        while_pending=while_pending,
    )


def start_redeploy(session: Session, environment: Environment) -> JobRun:
    """Move a redeployable environment to its next generation and record the run (not yet dispatched)."""
    updating = environment.phase in (Phase.ready, Phase.updating)
    next_phase = Phase.updating if updating else Phase.provisioning
    if environment.phase is not next_phase:
        environment.phase = transition(environment.phase, next_phase)
    environment.desired_generation += 1
    environment.message = "Redeploy requested"
    environment.error_code = None
    environment.updated_at = utcnow()
    session.add(environment)
    return jobruns.new_run(
        session,
        environment_id=environment.id or 0,
        kind="redeploy",
        generation=environment.desired_generation,
    )


def _redeploy(
    session: Session,
    actor: Principal,
    queue: JobQueue,
    environment_id: int,
    *,
    action: str,
    changes: dict[str, Any] | None = None,
    not_before: datetime | None = None,
    while_pending: bool = False,
) -> Environment:
    target = AuditTarget("environment", id=environment_id)
    with audited(session, actor, action, target):
        environment = get_environment(session=session, actor=actor, environment_id=environment_id)
        project = session.get(Project, environment.project_id)
        assert project is not None
        target.name, target.team_id = f"{project.name}/{environment.name}", project.team_id
        authorize_environment(session, actor, environment, Action.environment_redeploy, what="environment")
        startable = is_redeployable(environment.phase) or (
            while_pending and environment.phase is Phase.pending
        )
        if environment.desired_state != "present" or not startable:
            raise InvalidTransition(
                f"cannot redeploy an environment that is {environment.phase.value}",
                details={"phase": environment.phase.value},
            )
        if changes:
            spec = merge_spec(parse_spec(environment.spec), changes)
            require_allowed(spec.repo_url, allow_local=get_settings().allow_local_repos)
            environment.spec = spec.model_dump()
        run = start_redeploy(session, environment)
        target.team_id = project.team_id
        target.details = {"generation": environment.desired_generation, "job_run": run.id}
        if changes:
            target.details["changed"] = sorted(
                key for key, value in changes.items() if value not in (None, "")
            )
        if not_before is not None:
            run.retry_at = not_before  # the reconciler dispatches it when due
            environment.message = "Redeploy requested; waiting a moment for more changes"
    if not_before is None:
        jobruns.dispatch(session, queue, run)
    jobruns.announce(environment_id=environment_id, project_id=environment.project_id)
    return environment


def delete_environment(
    *, session: Session, actor: Principal, queue: JobQueue, environment_id: int, confirm: str | None = None
) -> Environment:
    """Tear an environment down. A deployment environment (staging, production) takes a
    team owner who confirms by its name: it runs a team's real workloads."""
    target = AuditTarget("environment", id=environment_id)
    with audited(session, actor, "environment.delete", target):
        environment = get_environment(session=session, actor=actor, environment_id=environment_id)
        project = session.get(Project, environment.project_id)
        assert project is not None
        target.name, target.team_id = f"{project.name}/{environment.name}", project.team_id
        authorize_environment(session, actor, environment, Action.environment_delete, what="environment")
        if environment.kind is EnvironmentKind.deployment:
            _protect_deployment(session, actor, environment, project, confirm)
        if environment.phase is Phase.deleted:
            raise NotFound(f"environment {environment.name!r} is already deleted")
        if environment.desired_state == "absent":
            target.record = False
            return environment  # already being deleted: asking twice is not an error
        if not is_deletable(environment.phase):
            raise InvalidTransition(f"cannot delete an environment that is {environment.phase.value}")
        environment.phase = transition(environment.phase, Phase.deleting)
        environment.desired_state = "absent"
        environment.desired_generation += 1
        environment.message = "Deletion requested"
        environment.updated_at = utcnow()
        session.add(environment)
        run = jobruns.new_run(
            session,
            environment_id=environment_id,
            kind=jobruns.TEARDOWN,
            generation=environment.desired_generation,
        )
        target.team_id = project.team_id
        target.details = {"job_run": run.id}
    jobruns.dispatch(session, queue, run)
    jobruns.announce(environment_id=environment_id, project_id=environment.project_id)
    return environment


def _protect_deployment(
    session: Session, actor: Principal, environment: Environment, project: Project, confirm: str | None
) -> None:
    owner_confirms(
        session,
        actor,
        project.team_id,
        action=Action.environment_delete.value,
        confirm=confirm,
        expected=environment.name,
        forbidden=f"{environment.name} is a deployment environment; only a team owner may delete it",
        unconfirmed=f"deleting {environment.name} removes a deployment environment and its workloads; "
        "confirm with its name",
        hint=f"Send confirm={environment.name!r} to delete it.",
    )


def latest_run(*, session: Session, actor: Principal, environment_id: int) -> JobRun | None:
    get_environment(session=session, actor=actor, environment_id=environment_id)
    return session.exec(
        select(JobRun).where(JobRun.environment_id == environment_id).order_by(col(JobRun.id).desc())
    ).first()
