"""Deployment environments and their releases: configure, release, approve, promote, roll back.

The database holds every step, and each step is one commit, so a worker killed
between any two of them leaves a state the reconciler drives on from
(:func:`drive`), never a second release:

1. A trigger (a push to a deploy branch, a CI call, a person) records an
   :class:`~envhub.models.Artifact` keyed by what made it, and one release per
   environment that takes releases directly, all ``rendering``. The same
   trigger again finds them (unique keys), and a newer release supersedes
   older ones still waiting in the same environment.
2. The render job renders the artifact once for every deployment environment
   (``integrations/rendering.py``) and records it, immutable.
3. Each release then waits for its environment's approvals and gates, and
   lands: the environment's spec becomes the artifact's spec for it, its
   generation moves, and the convergence job applies it
   (``services/convergence.py``), watching the rollout.
4. The convergence outcome settles the release (:func:`settle`): ready, or
   failed with the workload and reason (and a rollback when the environment
   asks for one). A ready release is promoted to the environments that take
   releases from this one, where it waits for their approvals and gates.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from envhub.config import get_settings
from envhub.domain import releases as rel
from envhub.domain.kube.names import namespace_for
from envhub.domain.phases import Phase, can_transition, transition
from envhub.domain.policy import Action, role_at_least
from envhub.domain.principals import SYSTEM, Principal, PrincipalType
from envhub.domain.releases import (
    ArtifactStatus,
    DeploymentSettings,
    GateResult,
    ReleaseStatus,
    ReleaseTrigger,
)
from envhub.domain.specs import EnvironmentKind, EnvironmentSpec, EnvironmentTarget, Trigger, parse_spec
from envhub.errors import (
    Conflict,
    EnvhubError,
    InvalidTransition,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from envhub.models import Approval, Artifact, Environment, GithubConnection, JobRun, Project, Release, Team
from envhub.models.base import utcnow
from envhub.queue.base import JobQueue, QueueUnavailable
from envhub.runtime.base import Runtime
from envhub.services import jobruns, ports
from envhub.services.access import authorize, team_role
from envhub.services.common import AuditTarget, audit, audited
from envhub.services.projects import get_project, project_defaults

log = logging.getLogger(__name__)

RENDER_JOB = "envhub.jobs.releases.render_artifact"
RELEASE_RUN = "release"
# A render still unfinished after this long was lost (worker killed, queue down): run it again.
_RENDER_REDRIVE_AFTER = timedelta(seconds=60)
_RENDER_MAX_ATTEMPTS = 5
# Outcomes this recent get their follow-ups again if a worker died before them.
_FOLLOW_UP_WITHIN = timedelta(hours=1)
# Waiting releases are checked again this often (gates may ask GitHub or a health URL);
# an approval moves its release on at once.
RECHECK_EVERY = timedelta(seconds=10)

Renderer = Callable[[rel.RenderRequest], rel.RenderedArtifact]


# --- settings ----------------------------------------------------------------------------


def is_local() -> bool:
    return get_settings().runtime == "local"


def settings_of(project: Project) -> DeploymentSettings | None:
    return rel.parse_settings(project.deployments)


def rollout_deadline(project: Project, environment: Environment) -> float | None:
    """How long a deployment environment's release may take to roll out; None for the others.

    Past it the release fails, naming the workloads that did not roll out.
    """
    settings = settings_of(project) if environment.kind is EnvironmentKind.deployment else None
    if settings is None:
        return None
    declared = settings.declared(environment.name)
    return float((declared.promotion if declared else rel.Promotion()).rollout_deadline_seconds)


def _require_settings(project: Project) -> DeploymentSettings:
    settings = settings_of(project)
    if settings is None:
        raise ValidationFailed(
            f"project {project.name} has no deployment environments",
            hint="Configure them first: source, branches and environments (envhub deployments configure).",
            details={"field": "deployments"},
        )
    return settings


def deployment_environments(session: Session, project_id: int) -> list[Environment]:
    return list(
        session.exec(
            select(Environment)
            .where(
                Environment.project_id == project_id,
                Environment.kind == EnvironmentKind.deployment,
                Environment.phase != Phase.deleted,
            )
            .order_by(col(Environment.id))
        )
    )


def configure_deployments(
    *,
    session: Session,
    actor: Principal,
    project_id: int,
    settings: dict[str, Any],
    queue: JobQueue | None = None,
) -> Project:
    """Set a project's deployment settings and create the environments they name that do not exist.

    Environments dropped from the settings are kept (they run production
    workloads): an owner deletes them, with confirmation. On a cluster, a new
    environment's namespace and isolation are made now (a ``prepare`` run on
    ``queue``, the configured one by default), so its first release only adds
    its workloads.
    """
    target = AuditTarget("project", id=project_id)
    with audited(session, actor, "project.deployments", target):
        project = get_project(session=session, actor=actor, project_id=project_id)
        target.name, target.team_id = project.name, project.team_id
        authorize(session, actor, project.team_id, Action.project_update, what="project")
        checked = rel.check_settings(settings, services=project_defaults(project).services, local=is_local())
        project.deployments = checked.model_dump(mode="json")
        project.updated_at = utcnow()
        session.add(project)
        existing = {env.name: env for env in deployment_environments(session, project_id)}
        taken = set(
            session.exec(
                select(Environment.name).where(
                    Environment.project_id == project_id, Environment.phase != Phase.deleted
                )
            )
        )
        created: list[Environment] = []
        for env in checked.environments:
            if env.name in existing:
                continue
            if env.name in taken:
                raise Conflict(
                    f"{project.name} already has a development environment named {env.name!r}",
                    hint="Delete it or name the deployment environment differently.",
                    details={"field": "deployments.environments"},
                )
            environment = Environment(
                project_id=project_id,
                name=env.name,
                kind=EnvironmentKind.deployment,
                trigger=Trigger.manual,
                phase=Phase.pending,
                message="No release yet",
                spec=project_defaults(project).model_dump(),
                # Generation 0: nothing is desired until the first release lands.
                desired_generation=0,
                created_by_id=actor.user_id,
            )
            session.add(environment)
            created.append(environment)
        session.flush()
        runs = [] if is_local() else [_prepare_run(session, environment) for environment in created]
        target.details = {
            "source": checked.source.describe(),
            "environments": [env.name for env in checked.environments],
            "created": [environment.name for environment in created],
        }
    for run in runs:
        jobruns.dispatch(session, queue or ports.queue(), run)
    jobruns.announce(project_id=project_id)
    return project


def _prepare_run(session: Session, environment: Environment) -> JobRun:
    """A run that makes the environment's namespace and isolation (no workloads: generation 0)."""
    assert environment.id is not None
    return jobruns.new_run(session, environment_id=environment.id, kind=jobruns.PREPARE, generation=0)


# --- triggers ----------------------------------------------------------------------------


def _next_number(session: Session, environment_id: int) -> int:
    last = session.exec(
        select(func.max(Release.number)).where(Release.environment_id == environment_id)
    ).one()
    return int(last or 0) + 1


def _environment_named(session: Session, project_id: int, name: str) -> Environment:
    found = session.exec(
        select(Environment).where(
            Environment.project_id == project_id,
            Environment.name == name,
            Environment.kind == EnvironmentKind.deployment,
            Environment.phase != Phase.deleted,
        )
    ).first()
    if found is None:
        raise NotFound(
            f"deployment environment {name!r} does not exist",
            hint="Save the project's deployment settings again to create it.",
            details={"environment": name},
        )
    return found


def _supersede_open(session: Session, environment_id: int, keep: int | None) -> list[int]:
    """Older releases still rendering or waiting in this environment give way to a newer one."""
    superseded = []
    for old in session.exec(
        select(Release).where(
            Release.environment_id == environment_id, col(Release.status).in_(rel.OPEN_STATUSES)
        )
    ):
        if old.id == keep:
            continue
        old.status, old.finished_at = ReleaseStatus.superseded, utcnow()
        old.message = "superseded by a newer release"
        session.add(old)
        assert old.id is not None
        superseded.append(old.id)
    return superseded


def _new_release(
    session: Session,
    *,
    project: Project,
    environment: Environment,
    artifact: Artifact,
    key: str,
    trigger: ReleaseTrigger,
    actor: Principal,
    source_release_id: int | None = None,
    status: ReleaseStatus = ReleaseStatus.rendering,
) -> Release:
    assert environment.id is not None
    assert artifact.id is not None
    assert project.id is not None
    release = Release(
        project_id=project.id,
        environment_id=environment.id,
        number=_next_number(session, environment.id),
        key=key,
        artifact_id=artifact.id,
        trigger=trigger,
        triggered_by=actor.name,
        triggered_by_user_id=actor.user_id,
        source_release_id=source_release_id,
        status=status,
        message="Rendering" if status is ReleaseStatus.rendering else "Checking approvals and gates",
    )
    session.add(release)
    session.flush()
    _supersede_open(session, environment.id, release.id)
    return release


def _release_of(
    session: Session,
    project: Project,
    environment: Environment,
    source: Release,
    key: str,
    trigger: ReleaseTrigger,
    actor: Principal,
) -> tuple[Release, bool]:
    """The release of ``source``'s artifact in ``environment`` under ``key``: found, or made (waiting)."""
    existing = session.exec(
        select(Release).where(Release.environment_id == environment.id, Release.key == key)
    ).first()
    if existing is not None:
        return existing, False
    artifact = session.get(Artifact, source.artifact_id)
    assert artifact is not None
    made = _new_release(
        session,
        project=project,
        environment=environment,
        artifact=artifact,
        key=key,
        trigger=trigger,
        actor=actor,
        source_release_id=source.id,
        status=ReleaseStatus.waiting,
    )
    return made, True


def create_release(
    *,
    session: Session,
    actor: Principal,
    queue: JobQueue,
    project_id: int,
    commit: str,
    ref: str = "",
    images: dict[str, str] | None = None,
    trigger: ReleaseTrigger = ReleaseTrigger.api,
    key: str | None = None,
) -> list[Release]:
    """Release ``commit`` (with ``images`` pinned) to the environments that take releases directly.

    Idempotent per trigger: the same ``key`` (by default the commit and the
    image digests) answers with the releases it made the first time.
    """
    project = session.get(Project, project_id)
    if project is None:
        raise NotFound(f"project {project_id} was not found", details={"project_id": project_id})
    target = AuditTarget("project", id=project_id, name=project.name, team_id=project.team_id)
    with audited(session, actor, "release.create", target):
        authorize(session, actor, project.team_id, Action.release_create, what=f"project {project_id}")
        settings = _require_settings(project)
        commit = rel.check_commit(commit)
        pinned = rel.check_images(images or {})
        if pinned and settings.source.kind is rel.SourceKind.command:
            raise ValidationFailed(
                "the embedded runtime runs the project's command; it has no images to pin",
                details={"field": "images"},
            )
        key = key or f"commit:{commit}" + (f":{rel.digest_json(pinned)[7:23]}" if pinned else "")
        existing = session.exec(
            select(Artifact).where(Artifact.project_id == project_id, Artifact.key == key)
        ).first()
        if existing is not None:
            target.record = False
            return list(
                session.exec(
                    select(Release)
                    .where(Release.artifact_id == existing.id, Release.key == f"artifact:{existing.id}")
                    .order_by(col(Release.id))
                )
            )
        artifact = Artifact(
            project_id=project_id,
            key=key,
            commit_sha=commit,
            ref=ref,
            source=settings.source.model_dump(mode="json"),
            images=pinned,
        )
        session.add(artifact)
        try:
            session.flush()
        except IntegrityError as exc:  # the same trigger, twice at once: the other one won
            raise Conflict(
                "this release is being recorded by another request", hint="Ask again in a moment."
            ) from exc
        made = []
        for env in settings.first():
            environment = _environment_named(session, project_id, env.name)
            made.append(
                _new_release(
                    session,
                    project=project,
                    environment=environment,
                    artifact=artifact,
                    key=f"artifact:{artifact.id}",
                    trigger=trigger,
                    actor=actor,
                )
            )
        target.details = {
            "commit": commit,
            "ref": ref,
            "images": pinned,
            "trigger": trigger.value,
            "releases": [f"{env.name}#{r.number}" for env, r in zip(settings.first(), made, strict=True)],
        }
    _enqueue_render(session, queue, artifact)
    jobruns.announce(project_id=project_id)
    return made


def release_from_push(
    *,
    session: Session,
    queue: JobQueue,
    actor: Principal,
    project_id: int,
    branch: str,
    commit: str,
    deleted: bool,
) -> str | None:
    """A push the GitHub webhook delivered: a release when it lands on a deploy branch; what was done."""
    project = session.get(Project, project_id)
    settings = settings_of(project) if project else None
    if project is None or settings is None or deleted or not settings.deploys(branch):
        return None
    if settings.release_on != "push":
        return f"push to {branch}: releases come from CI calls"
    made = create_release(
        session=session,
        actor=actor,
        queue=queue,
        project_id=project_id,
        commit=commit,
        ref=branch,
        trigger=ReleaseTrigger.push,
    )
    return f"push to {branch}: release " + ", ".join(f"#{r.number}" for r in made)


def _enqueue_render(session: Session, queue: JobQueue, artifact: Artifact) -> None:
    try:
        queue.enqueue(RENDER_JOB, artifact.id, job_id=f"envhub-render-{artifact.id}-{artifact.attempts}")
    except QueueUnavailable as exc:
        log.warning("queue unavailable, artifact %s will be re-driven: %s", artifact.id, exc)
        return
    artifact.enqueued_at = utcnow()
    session.add(artifact)
    session.commit()


# --- rendering (the job) ---------------------------------------------------------------


def render_request(session: Session, artifact: Artifact, token: str | None) -> rel.RenderRequest:
    project = session.get(Project, artifact.project_id)
    assert project is not None
    settings = _require_settings(project)
    base = project_defaults(project)
    return rel.RenderRequest(
        project=project.name,
        commit=artifact.commit_sha,
        ref=artifact.ref,
        repo_url=base.repo_url,
        source=rel.ReleaseSource.model_validate(artifact.source),
        environments=settings.environments,
        images=dict(artifact.images),
        base_spec=base.model_dump(mode="json"),
        token=token,
        namespaces=_namespaces(session, project),
    )


def _namespaces(session: Session, project: Project) -> dict[str, str]:
    team = session.get(Team, project.team_id)
    assert team is not None
    return {
        environment.name: namespace_for(
            EnvironmentTarget(
                id=environment.id or 0,
                name=environment.name,
                project=project.name,
                team=team.name,
                generation=0,
                spec=EnvironmentSpec(),
            )
        )
        for environment in deployment_environments(session, project.id or 0)
    }


def repository_token(session: Session, project_id: int) -> str | None:
    """A short-lived token that reads the project's repository, when it is connected to GitHub."""
    from envhub.services import github

    connection = session.exec(
        select(GithubConnection).where(GithubConnection.project_id == project_id)
    ).first()
    if connection is None:
        return None
    client = github.client_for(connection)
    try:
        return client.installation_token().token
    finally:
        client.close()


def render_artifact(*, session: Session, queue: JobQueue, artifact_id: int, renderer: Renderer) -> str:
    """Render an artifact (once: a rendered one is left alone), then move its releases on."""
    artifact = session.get(Artifact, artifact_id, with_for_update=True)
    if artifact is None:
        return "no such artifact"
    if artifact.status is ArtifactStatus.rendering:
        artifact.attempts += 1
        session.add(artifact)
        session.commit()
        try:
            request = render_request(
                session,
                artifact,
                repository_token(session, artifact.project_id)
                if rel.ReleaseSource.model_validate(artifact.source).from_repository
                else None,
            )
            result = renderer(request)
        except EnvhubError as exc:
            session.rollback()
            artifact = session.get(Artifact, artifact_id)
            assert artifact is not None
            if exc.retryable and artifact.attempts < _RENDER_MAX_ATTEMPTS:
                artifact.error = f"{exc.message} (will retry)"
                session.add(artifact)
                session.commit()
                raise
            artifact.status, artifact.error, artifact.error_code = (
                ArtifactStatus.failed,
                exc.message,
                exc.code,
            )
            session.add(artifact)
            _fail_releases(session, artifact, exc)
            session.commit()
            jobruns.announce(project_id=artifact.project_id)
            return f"failed: {exc.code}"
        artifact.rendered = dict(result.rendered)
        artifact.digests = {name: rel.digest_of(text) for name, text in result.rendered.items()}
        artifact.specs = {name: dict(spec) for name, spec in result.specs.items()}
        artifact.chart = dict(result.chart)
        artifact.notes = result.notes
        artifact.status, artifact.rendered_at, artifact.error = ArtifactStatus.rendered, utcnow(), ""
        session.add(artifact)
        session.commit()
    advanced = 0
    for release in session.exec(
        select(Release).where(Release.artifact_id == artifact_id, Release.status == ReleaseStatus.rendering)
    ).all():
        advance(session=session, queue=queue, release_id=release.id or 0)
        advanced += 1
    return f"rendered; {advanced} release(s) moved on"


def _fail_releases(session: Session, artifact: Artifact, error: EnvhubError) -> None:
    for release in session.exec(
        select(Release).where(Release.artifact_id == artifact.id, col(Release.status).in_(rel.OPEN_STATUSES))
    ):
        release.status, release.finished_at = ReleaseStatus.failed, utcnow()
        release.message = f"rendering failed: {error.message}" + (f". {error.hint}" if error.hint else "")
        release.error_code = error.code
        session.add(release)


# --- approvals and gates -----------------------------------------------------------------


class GateChecks:
    """The gates that look outside the database: GitHub checks, a health URL, restarts."""

    def __init__(self, runtime: Runtime | None = None, http: httpx.Client | None = None) -> None:
        self.runtime = runtime
        self.http = http

    def github_checks(self, session: Session, project_id: int, commit: str) -> GateResult:
        from envhub.services import github

        connection = session.exec(
            select(GithubConnection).where(GithubConnection.project_id == project_id)
        ).first()
        if connection is None:
            return GateResult("github_checks", False, "the project is not connected to GitHub")
        client = github.client_for(connection, max_wait=5.0)
        try:
            state, summary = client.commit_checks(commit)
        except EnvhubError as exc:
            return GateResult("github_checks", False, f"GitHub could not be asked: {exc.message}")
        finally:
            client.close()
        return GateResult("github_checks", state == "success", summary)

    def health(self, url: str) -> GateResult:
        client = self.http or httpx.Client(timeout=5.0, follow_redirects=False)
        try:
            answer = client.get(url)
        except httpx.HTTPError as exc:
            return GateResult("health_url", False, f"{url} did not answer: {type(exc).__name__}")
        finally:
            if self.http is None:
                client.close()
        if answer.status_code < 400:
            return GateResult("health_url", True, f"{url} answered {answer.status_code}")
        return GateResult("health_url", False, f"{url} answered {answer.status_code}")

    def restarts(self, environment_id: int) -> int:
        if self.runtime is None:
            return 0
        try:
            found = self.runtime.inspect(environment_id)
        except EnvhubError:
            return 0
        return sum(container.restarts for pod in found.pods for container in pod.containers)


def _approvers(session: Session, release_id: int) -> list[str]:
    return list(
        session.exec(
            select(Approval.name).where(Approval.release_id == release_id).order_by(col(Approval.id))
        )
    )


def _source_release(session: Session, release: Release) -> Release | None:
    return session.get(Release, release.source_release_id) if release.source_release_id else None


def evaluate(session: Session, release: Release, checks: GateChecks, now: datetime) -> list[GateResult]:
    """Every approval and gate the release's environment asks for, evaluated now."""
    project = session.get(Project, release.project_id)
    environment = session.get(Environment, release.environment_id)
    assert project is not None
    assert environment is not None
    settings = _require_settings(project)
    policy = settings.environment(environment.name).promotion
    if release.trigger is ReleaseTrigger.rollback:
        return []  # a rollback was approved by whoever asked for it (it needs the rollback right)
    results: list[GateResult] = []
    if policy.approvals:
        results.append(
            rel.approvals_result(policy.approvals, _approvers(session, release.id or 0), policy.approver_role)
        )
    gates = policy.gates
    if gates.soak_minutes is not None:
        source = _source_release(session, release)
        if source is None:
            results.append(GateResult("soak", False, "it was not promoted from another environment"))
        else:
            source_env = session.get(Environment, source.environment_id)
            running = current_release(session, source.environment_id)
            still = running is not None and running.artifact_id == source.artifact_id
            restarts = checks.restarts(source.environment_id) - source.restarts_at_ready if still else 0
            results.append(
                rel.soak_result(
                    gates.soak_minutes,
                    source.finished_at if still and source.status is ReleaseStatus.ready else None,
                    max(0, restarts),
                    now,
                    source_env.name if source_env else "the earlier environment",
                )
            )
    if gates.github_checks:
        artifact = session.get(Artifact, release.artifact_id)
        assert artifact is not None
        results.append(checks.github_checks(session, release.project_id, artifact.commit_sha))
    if gates.health_url:
        results.append(checks.health(gates.health_url))
    if gates.window is not None:
        results.append(rel.window_result(gates.window, now))
    return results


def current_release(session: Session, environment_id: int) -> Release | None:
    """The release the environment runs: its last one that became ready."""
    return session.exec(
        select(Release)
        .where(Release.environment_id == environment_id, Release.status == ReleaseStatus.ready)
        .order_by(col(Release.id).desc())
    ).first()


def advance(
    *, session: Session, queue: JobQueue, release_id: int, checks: GateChecks | None = None
) -> Release | None:
    """Move a rendering or waiting release on as far as it can go now; safe to call any time."""
    release = session.get(Release, release_id, with_for_update=True)
    if release is None or release.status not in rel.OPEN_STATUSES:
        return release
    artifact = session.get(Artifact, release.artifact_id)
    assert artifact is not None
    if artifact.status is ArtifactStatus.rendering:
        return release
    if artifact.status is ArtifactStatus.failed:
        _fail_releases(session, artifact, ValidationFailed(artifact.error))
        session.commit()
        return release
    results = evaluate(session, release, checks or GateChecks(), utcnow())
    release.gates = [result.as_dict() for result in results]
    release.checked_at = utcnow()
    failing = [result for result in results if not result.passed]
    if failing:
        release.status = ReleaseStatus.waiting
        release.message = "Waiting: " + "; ".join(result.reason for result in failing)
        session.add(release)
        session.commit()
        jobruns.announce(environment_id=release.environment_id, project_id=release.project_id)
        return release
    _deploy(session, queue, release, artifact)
    return release


def _deploy(session: Session, queue: JobQueue, release: Release, artifact: Artifact) -> None:
    """Land the release: the environment's spec and generation move, and a job applies them."""
    environment = session.get(Environment, release.environment_id, with_for_update=True)
    project = session.get(Project, release.project_id)
    assert environment is not None
    assert project is not None
    assert environment.id is not None
    if environment.desired_state != "present":
        release.status, release.finished_at = ReleaseStatus.cancelled, utcnow()
        release.message = "the environment is being deleted"
        session.add(release)
        session.commit()
        return
    spec = artifact.specs.get(environment.name)
    if spec is None:
        release.status, release.finished_at = ReleaseStatus.failed, utcnow()
        release.message = (
            f"the artifact was rendered before {environment.name} existed; release the commit again"
        )
        release.error_code = "validation_failed"
        session.add(release)
        session.commit()
        return
    # Releases still deploying in this environment are overtaken by this one.
    for older in session.exec(
        select(Release).where(
            Release.environment_id == environment.id, Release.status == ReleaseStatus.deploying
        )
    ):
        older.status, older.finished_at = ReleaseStatus.superseded, utcnow()
        older.message = f"overtaken by release #{release.number}"
        session.add(older)
    environment.spec = parse_spec(dict(spec)).model_dump()
    updating = environment.phase in (Phase.ready, Phase.updating)
    next_phase = Phase.updating if updating else Phase.provisioning
    if environment.phase is not next_phase and can_transition(environment.phase, next_phase):
        environment.phase = transition(environment.phase, next_phase)
    environment.desired_generation += 1
    environment.message = f"Deploying release #{release.number}"
    environment.error_code = None
    environment.updated_at = utcnow()
    session.add(environment)
    run = jobruns.new_run(
        session, environment_id=environment.id, kind=RELEASE_RUN, generation=environment.desired_generation
    )
    release.status, release.started_at = ReleaseStatus.deploying, utcnow()
    release.generation = environment.desired_generation
    release.message = f"Deploying {artifact.commit_sha[:12]}"
    session.add(release)
    audit(
        session,
        SYSTEM,
        "release.deploy",
        target_type="environment",
        target_id=environment.id,
        target=f"{project.name}/{environment.name}",
        team_id=project.team_id,
        details={
            "release": release.number,
            "commit": artifact.commit_sha,
            "digest": artifact.digests.get(environment.name, ""),
            "generation": environment.desired_generation,
            "job_run": run.id,
        },
    )
    session.commit()
    jobruns.dispatch(session, queue, run)
    jobruns.announce(environment_id=environment.id, project_id=project.id)


# --- outcomes (called by the convergence job) ------------------------------------------------


def settle(
    session: Session,
    environment: Environment,
    generation: int,
    *,
    ready: bool,
    message: str = "",
    error_code: str | None = None,
    workloads: Sequence[dict[str, Any]] = (),
    restarts: Callable[[], int] | None = None,
) -> Release | None:
    """The outcome of the release applied as ``generation`` (caller commits).

    ``restarts`` counts the environment's container restarts; it is asked
    only when a later environment's soak gate will compare against it.
    """
    release = session.exec(
        select(Release).where(
            Release.environment_id == environment.id,
            Release.generation == generation,
            Release.status == ReleaseStatus.deploying,
        )
    ).first()
    if release is None:
        return None
    release.finished_at = utcnow()
    release.workloads = [dict(item) for item in workloads]
    if ready:
        release.status, release.message = ReleaseStatus.ready, message or "Ready"
        project = session.get(Project, release.project_id)
        settings = settings_of(project) if project else None
        soaked = settings is not None and any(
            env.promotion.gates.soak_minutes is not None for env in settings.promoted_from(environment.name)
        )
        release.restarts_at_ready = restarts() if soaked and restarts is not None else 0
    else:
        release.status, release.message, release.error_code = ReleaseStatus.failed, message, error_code
    session.add(release)
    return release


def after_settle(session: Session, queue: JobQueue, release: Release) -> None:
    """What follows an outcome, once it is committed: promotion, or an automatic rollback.

    Idempotent (each follow-up has its own release key), so the reconciler
    calls it again for recent outcomes whose worker died before getting here.
    """
    project = session.get(Project, release.project_id)
    environment = session.get(Environment, release.environment_id)
    if project is None or environment is None:
        return
    settings = settings_of(project)
    if settings is None or environment.name not in {env.name for env in settings.environments}:
        return
    if release.status is ReleaseStatus.ready:
        running = current_release(session, environment.id or 0)
        if running is None or running.id != release.id:
            return  # a newer release runs there now: promote that one
        live = {env.id: env.name for env in deployment_environments(session, project.id or 0)}
        # Where it was promoted already (the reconciler calls this again for recent outcomes):
        # nothing to do there, not even a transaction.
        promoted = {
            live.get(environment_id)
            for environment_id in session.exec(
                select(Release.environment_id).where(
                    col(Release.environment_id).in_(list(live)), Release.key == f"promotion:{release.id}"
                )
            )
        }
        for env in settings.promoted_from(environment.name):
            if env.name not in live.values() or env.name in promoted:
                continue  # deleted by its owner (still in the settings), or promoted already
            try:
                promote(session=session, actor=SYSTEM, queue=queue, release_id=release.id or 0, to=env.name)
            except EnvhubError as exc:
                log.warning("could not promote release %s to %s: %s", release.id, env.name, exc.message)
    elif (
        release.status is ReleaseStatus.failed
        and release.started_at is not None
        and settings.environment(environment.name).promotion.auto_rollback
    ):
        latest = session.exec(
            select(Release).where(Release.environment_id == environment.id).order_by(col(Release.id).desc())
        ).first()
        previous = current_release(session, environment.id or 0)
        if latest is None or latest.id != release.id or previous is None:
            return  # something newer happened, or there is nothing to go back to
        _rollback_to(
            session,
            queue,
            project,
            environment,
            previous,
            SYSTEM,
            key=f"autorollback:{release.id}",
            reason=f"release #{release.number} failed",
        )


# --- people's actions --------------------------------------------------------------------


def _release_context(
    session: Session, actor: Principal, release_id: int
) -> tuple[Release, Environment, Project]:
    release = session.get(Release, release_id)
    if release is None:
        raise NotFound(f"release {release_id} was not found", details={"release_id": release_id})
    environment = session.get(Environment, release.environment_id)
    project = session.get(Project, release.project_id)
    assert environment is not None
    assert project is not None
    authorize(session, actor, project.team_id, Action.project_read, what=f"release {release_id}")
    return release, environment, project


def promote(*, session: Session, actor: Principal, queue: JobQueue, release_id: int, to: str) -> Release:
    """Carry a ready release's artifact to the environment ``to`` (it waits there for its gates)."""
    source = session.get(Release, release_id)
    if source is None:
        raise NotFound(f"release {release_id} was not found")
    project = session.get(Project, source.project_id)
    assert project is not None
    target = AuditTarget("release", id=release_id, team_id=project.team_id)
    with audited(session, actor, "release.promote", target):
        # Promoting starts from reading the release, as approving, cancelling and rolling back
        # do: a deploy-scoped token (CI) makes releases from commits, and moves none onward.
        authorize(session, actor, project.team_id, Action.project_read, what=f"release {release_id}")
        authorize(session, actor, project.team_id, Action.release_create, what=f"release {release_id}")
        settings = _require_settings(project)
        source_env = session.get(Environment, source.environment_id)
        assert source_env is not None
        env = settings.environment(to)
        if env.promotion.promote_from != source_env.name:
            raise ValidationFailed(
                f"{to} takes releases from {env.promotion.promote_from or 'merges and CI'}, "
                f"not from {source_env.name}",
                details={"field": "to"},
            )
        if source.status is not ReleaseStatus.ready:
            raise InvalidTransition(
                f"release #{source.number} of {source_env.name} is {source.status.value}; "
                "only a ready release is promoted"
            )
        environment = _environment_named(session, project.id or 0, to)
        key = f"promotion:{source.id}"
        release, made = _release_of(
            session, project, environment, source, key, ReleaseTrigger.promotion, actor
        )
        if not made:
            target.record = False
            return release
        # The person who triggered what is promoted triggered this too: they may not approve it.
        release.triggered_by = source.triggered_by if actor.is_system else actor.name
        release.triggered_by_user_id = source.triggered_by_user_id if actor.is_system else actor.user_id
        target.name = f"{project.name}/{to}#{release.number}"
        artifact = session.get(Artifact, source.artifact_id)
        assert artifact is not None
        target.details = {"from": f"{source_env.name}#{source.number}", "commit": artifact.commit_sha}
    advance(session=session, queue=queue, release_id=release.id or 0)
    return release


def approve_release(
    *, session: Session, actor: Principal, queue: JobQueue, release_id: int, comment: str = ""
) -> Release:
    release, environment, project = _release_context(session, actor, release_id)
    target = AuditTarget(
        "release",
        id=release_id,
        name=f"{project.name}/{environment.name}#{release.number}",
        team_id=project.team_id,
    )
    with audited(session, actor, "release.approve", target):
        authorize(session, actor, project.team_id, Action.release_approve, what=f"release {release_id}")
        # A person, at the dashboard or through a token of theirs with the write scope (the CLI,
        # MCP); never envhub itself or an agent. (Agents never hold release.approve anyway.)
        if actor.user_id is None or actor.type not in (PrincipalType.user, PrincipalType.token):
            raise PermissionDenied(
                "only a person can approve a release", details={"action": "release.approve"}
            )
        if release.triggered_by_user_id == actor.user_id:
            raise PermissionDenied(
                "you triggered this release, so someone else must approve it",
                hint="Ask another team member with the approver role.",
                details={"action": "release.approve", "reason": "self_approval"},
            )
        policy = _require_settings(project).environment(environment.name).promotion
        role = team_role(session, actor, project.team_id)
        if not role_at_least(role, policy.approver_role):
            raise PermissionDenied(
                f"approving releases of {environment.name} needs a team "
                f"{policy.approver_role.value} or above; you are {role}",
                details={"action": "release.approve", "role": role, "needed": policy.approver_role.value},
            )
        if release.status not in rel.OPEN_STATUSES:
            raise InvalidTransition(
                f"release #{release.number} is {release.status.value}; only a waiting release is approved"
            )
        if (
            session.exec(
                select(Approval).where(Approval.release_id == release_id, Approval.user_id == actor.user_id)
            ).first()
            is not None
        ):
            raise Conflict("you already approved this release", details={"reason": "already_approved"})
        session.add(
            Approval(release_id=release_id, user_id=actor.user_id, name=actor.name, comment=comment[:2000])
        )
        target.details = {"comment": comment[:200]} if comment else {}
    advance(session=session, queue=queue, release_id=release_id)
    return release


def cancel_release(*, session: Session, actor: Principal, release_id: int) -> Release:
    release, environment, project = _release_context(session, actor, release_id)
    target = AuditTarget(
        "release",
        id=release_id,
        name=f"{project.name}/{environment.name}#{release.number}",
        team_id=project.team_id,
    )
    with audited(session, actor, "release.cancel", target):
        authorize(session, actor, project.team_id, Action.release_cancel, what=f"release {release_id}")
        if release.status not in rel.OPEN_STATUSES:
            raise InvalidTransition(
                f"release #{release.number} is {release.status.value}; "
                "only a release that renders or waits can be cancelled"
            )
        release.status, release.finished_at = ReleaseStatus.cancelled, utcnow()
        release.message = f"cancelled by {actor.name}"
        session.add(release)
    jobruns.announce(environment_id=environment.id, project_id=project.id)
    return release


def rollback(*, session: Session, actor: Principal, queue: JobQueue, release_id: int) -> Release:
    """Land release ``release_id``'s content again, as a new release of its environment."""
    old, environment, project = _release_context(session, actor, release_id)
    target = AuditTarget(
        "environment", id=environment.id, name=f"{project.name}/{environment.name}", team_id=project.team_id
    )
    with audited(session, actor, "release.rollback", target):
        authorize(session, actor, project.team_id, Action.release_rollback, what=f"release {release_id}")
        if old.status not in (ReleaseStatus.ready, ReleaseStatus.superseded) or old.started_at is None:
            raise InvalidTransition(
                f"release #{old.number} never ran ({old.status.value}); roll back to one that was ready",
                details={"status": old.status.value},
            )
        release = _rollback_to(
            session,
            queue,
            project,
            environment,
            old,
            actor,
            key=f"rollback:{old.id}:{_next_number(session, environment.id or 0)}",
            reason="",
            commit=False,
        )
        target.details = {"to": old.number, "release": release.number}
    advance(session=session, queue=queue, release_id=release.id or 0)
    return release


def _rollback_to(
    session: Session,
    queue: JobQueue,
    project: Project,
    environment: Environment,
    old: Release,
    actor: Principal,
    *,
    key: str,
    reason: str,
    commit: bool = True,
) -> Release:
    release, made = _release_of(session, project, environment, old, key, ReleaseTrigger.rollback, actor)
    if not made:
        return release
    release.message = f"Rolling back to #{old.number}" + (f": {reason}" if reason else "")
    if commit:
        audit(
            session,
            actor,
            "release.rollback",
            target_type="environment",
            target_id=environment.id,
            target=f"{project.name}/{environment.name}",
            team_id=project.team_id,
            details={"to": old.number, "release": release.number, "reason": reason},
        )
        session.commit()
        advance(session=session, queue=queue, release_id=release.id or 0)
    return release


# --- the reconciler's part ---------------------------------------------------------------


def drive(*, session: Session, queue: JobQueue, checks: GateChecks) -> dict[str, int]:
    """Re-drive what a lost job left, from the database alone.

    Renders never finished (queue down, worker killed) are asked for again;
    releases whose artifact rendered while nobody moved them on are moved on;
    waiting releases have their gates checked again; recent outcomes get
    their follow-ups (promotion, automatic rollback) if they never did.
    """
    now = utcnow()
    report = {"renders_redriven": 0, "releases_moved": 0, "releases_checked": 0}
    for artifact in session.exec(select(Artifact).where(Artifact.status == ArtifactStatus.rendering)).all():
        if artifact.enqueued_at is None or artifact.enqueued_at < now - _RENDER_REDRIVE_AFTER:
            _enqueue_render(session, queue, artifact)
            report["renders_redriven"] += 1
    stranded = session.exec(
        select(Release.id)
        .join(Artifact, col(Artifact.id) == Release.artifact_id)
        .where(Release.status == ReleaseStatus.rendering, Artifact.status != ArtifactStatus.rendering)
    ).all()
    for release_id in stranded:
        advance(session=session, queue=queue, release_id=release_id or 0, checks=checks)
        report["releases_moved"] += 1
    for release in session.exec(select(Release).where(Release.status == ReleaseStatus.waiting)).all():
        if release.checked_at is not None and release.checked_at > now - RECHECK_EVERY:
            continue
        advance(session=session, queue=queue, release_id=release.id or 0, checks=checks)
        report["releases_checked"] += 1
    recent = session.exec(
        select(Release).where(
            col(Release.status).in_((ReleaseStatus.ready, ReleaseStatus.failed)),
            col(Release.finished_at) > now - _FOLLOW_UP_WITHIN,
        )
    ).all()
    for release in recent:
        after_settle(session, queue, release)
    return report
