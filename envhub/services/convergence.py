"""The job side of environments: a JobRun's life from start to outcome.

A job calls :func:`begin_run`, reports progress through :class:`RunProgress`,
and ends with :func:`complete_run`, :func:`retry_later` or :func:`fail_run`.
Each phase change is audited as the system principal. Every function re-reads
the rows, so a run superseded meanwhile (a newer redeploy, a delete) never
overwrites the newer intent.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from sqlmodel import Session

from envhub.config import get_settings
from envhub.domain.phases import Phase, can_transition
from envhub.domain.principals import SYSTEM
from envhub.domain.progress import EXTRA_STEP_TITLES, Step, StepStatus, initial_steps
from envhub.domain.specs import EnvironmentKind, EnvironmentSpec, EnvironmentTarget
from envhub.domain.url_access import parse_url_access
from envhub.errors import EnvhubError
from envhub.integrations.backing.base import Backends
from envhub.integrations.object_store import ObjectStore
from envhub.models import Environment, JobRun, JobStatus, Project, Team
from envhub.models.base import utcnow
from envhub.models.job import ACTIVE_JOB_STATUSES
from envhub.runtime.base import ProgressReporter, Runtime
from envhub.services import git_credentials, jobruns, ports, provisioning, releases
from envhub.services.common import audit
from envhub.services.jobruns import RESYNC
from envhub.services.secrets import environment_secrets
from envhub.urls.base import UrlProvider

log = logging.getLogger(__name__)

# A teardown the runtime finishes on its own is looked at again after this many
# seconds, twice as long each time up to the maximum; the runtime's watch
# usually reports the end first.
_REMOVAL_RECHECK = 2.0
_REMOVAL_RECHECK_MAX = 30.0


@dataclass(frozen=True, slots=True)
class Assignment:
    run_id: int
    environment_id: int
    project_id: int
    target: EnvironmentTarget
    desired_state: str
    kind: str = ""  # the JobRun's


def set_phase(
    session: Session,
    environment: Environment,
    phase: Phase,
    *,
    team_id: int,
    target: str,
    message: str,
    error_code: str | None = None,
) -> None:
    previous = environment.phase
    environment.message = message
    environment.error_code = error_code
    environment.updated_at = utcnow()
    if previous is phase or not can_transition(previous, phase):
        session.add(environment)
        return
    environment.phase = phase
    session.add(environment)
    audit(
        session,
        SYSTEM,
        f"environment.{phase.value}",
        target_type="environment",
        target_id=environment.id,
        target=target,
        team_id=team_id,
        outcome="failure" if phase is Phase.failed else "success",
        error_code=error_code,
        details={"from": previous.value, "to": phase.value, "message": message},
    )


def project_and_team(session: Session, environment: Environment) -> tuple[Project, Team]:
    project = session.get(Project, environment.project_id)
    assert project is not None
    team = session.get(Team, project.team_id)
    assert team is not None
    return project, team


def begin_run(
    session: Session, *, environment_id: int, run_id: int, runtime: Runtime | None = None
) -> Assignment | None:
    """Claim a run. None when there is nothing to do (superseded or finished).

    With ``runtime``, a fresh run's steps are replaced by that runtime's plan so
    the page lists the steps this runtime will actually report.
    """
    run = session.get(JobRun, run_id, with_for_update=True)
    environment = session.get(Environment, environment_id)
    if run is None or environment is None or run.status not in ACTIVE_JOB_STATUSES:
        return None
    if run.generation != environment.desired_generation:
        run.status, run.finished_at = JobStatus.abandoned, utcnow()
        run.error = "superseded by a newer change"
        session.add(run)
        session.commit()
        return None
    project, team = project_and_team(session, environment)
    now = utcnow()
    run.status = JobStatus.running
    run.attempts += 1
    run.started_at = run.started_at or now
    run.heartbeat_at = now
    run.retry_at = None
    if runtime is not None and all(step["status"] == StepStatus.pending.value for step in run.steps):
        plan = runtime.teardown_plan if environment.desired_state == "absent" else runtime.provision_plan
        if run.kind in (jobruns.PREPARE, jobruns.SLEEP, jobruns.WAKE):
            plan = jobruns.PLANS[run.kind]
        run.steps = [dict(step) for step in initial_steps(plan)]
    session.add(run)
    label = f"{project.name}/{environment.name}"
    if run.kind in (RESYNC, jobruns.PREPARE):
        pass  # a periodic re-apply of a ready environment, or a place made ahead: its phase does not move
    elif run.kind == jobruns.SLEEP:
        environment.message = "Going to sleep"  # it stays ready until its processes have stopped
        session.add(environment)
    elif run.kind == jobruns.WAKE and environment.desired_state == "present":
        set_phase(
            session,
            environment,
            Phase.provisioning,
            team_id=team.id or 0,
            target=label,
            message=f"Waking up (attempt {run.attempts})",
        )
    elif environment.desired_state == "present":
        phase = Phase.updating if environment.phase in (Phase.ready, Phase.updating) else Phase.provisioning
        set_phase(
            session,
            environment,
            phase,
            team_id=team.id or 0,
            target=label,
            message=f"{'Updating' if phase is Phase.updating else 'Provisioning'} (attempt {run.attempts})",
        )
    else:
        set_phase(
            session, environment, Phase.deleting, team_id=team.id or 0, target=label, message="Tearing down"
        )
    session.commit()
    jobruns.announce(environment_id=environment_id, project_id=project.id)
    assert environment.id is not None
    assert project.id is not None
    return Assignment(
        run_id=run_id,
        environment_id=environment.id,
        project_id=project.id,
        desired_state=environment.desired_state,
        kind=run.kind,
        target=EnvironmentTarget(
            id=environment.id,
            name=environment.name,
            project=project.name,
            team=team.name,
            generation=environment.desired_generation,
            spec=EnvironmentSpec.model_validate(environment.spec),
            url_access=parse_url_access(project.url_access),
            rollout_deadline=releases.rollout_deadline(project, environment),
            git_origin=git_credentials.repository_origin(session, project.id),
            kind=EnvironmentKind(environment.kind),
        ),
    )


def prepared(
    session: Session,
    assignment: Assignment,
    *,
    urls: UrlProvider,
    backends: Backends | None = None,
    progress: ProgressReporter | None = None,
    store: ObjectStore | None = None,
) -> EnvironmentTarget:
    """The target as the runtime applies it: the project's secrets, and where people will reach it.

    With ``backends`` (an apply, not a prepare), the project's managed services
    are made for the environment first, and their variables join the secrets;
    ``store`` holds the backups a new database may be copied from.
    """
    address = urls.address(assignment.target)
    target = dataclasses.replace(
        assignment.target, public_url=address.url, ingress=address.ingress, gateway=address.gateway
    )
    grant = provisioning.Grant()
    if backends is not None and progress is not None:
        project = session.get(Project, assignment.project_id)
        assert project is not None
        grant = provisioning.provision(
            session, target, project=project, backends=backends, progress=progress, store=store
        )
        target = dataclasses.replace(target, service_sockets=grant.sockets, service_objects=grant.objects)
    return with_secrets(session, dataclasses.replace(assignment, target=target), extra=grant.variables)


def with_secrets(
    session: Session, assignment: Assignment, *, extra: Mapping[str, str] | None = None
) -> EnvironmentTarget:
    """The target with the project's secrets (and ``extra`` variables), opened now, just before the runtime
    uses them."""
    project = session.get(Project, assignment.project_id)
    assert project is not None
    values = environment_secrets(session, team_id=project.team_id, project_id=assignment.project_id)
    values.update(extra or {})
    if not values:
        return assignment.target
    key = get_settings().derived_key("secrets-digest")
    digest = hmac.new(key, json.dumps(sorted(values.items())).encode(), hashlib.sha256).hexdigest()[:32]
    return dataclasses.replace(assignment.target, secrets=values, secrets_digest=digest)


class RunProgress:
    """Records runtime progress on the JobRun (implements ``ProgressReporter``)."""

    def __init__(self, session: Session, assignment: Assignment) -> None:
        self.session = session
        self.assignment = assignment

    def _update(self, key: str, status: StepStatus, detail: str) -> None:
        run = self.session.get(JobRun, self.assignment.run_id)
        environment = self.session.get(Environment, self.assignment.environment_id)
        if run is None or environment is None:
            return
        now = utcnow().isoformat()
        steps = [dict(step) for step in run.steps]
        if all(step["key"] != key for step in steps):  # a step the plan did not list
            # Shown where it happens: before the first step not started yet (at the end if none).
            waiting = [i for i, step in enumerate(steps) if step["status"] == StepStatus.pending.value]
            steps.insert(
                waiting[0] if waiting else len(steps),
                dict(
                    Step(
                        key=key,
                        title=EXTRA_STEP_TITLES.get(key) or key.replace("_", " ").capitalize(),
                        status="pending",
                        detail="",
                        started_at=None,
                        finished_at=None,
                    )
                ),
            )
        for step in steps:
            if step["key"] != key:
                continue
            if status is StepStatus.skipped and step["status"] == StepStatus.done.value:
                continue  # done by an earlier attempt (a teardown that came back to see the end)
            step["status"] = status.value
            step["detail"] = detail or step.get("detail", "")
            if status is StepStatus.running:
                step["started_at"], step["finished_at"] = now, None
            else:
                step["started_at"] = step.get("started_at") or now
                step["finished_at"] = now
            if status is StepStatus.running and run.kind != RESYNC:
                environment.message = f"{step['title']}…" + (f" {detail}" if detail else "")
                self.session.add(environment)
        run.steps = steps
        run.heartbeat_at = utcnow()
        self.session.add(run)
        self.session.commit()
        jobruns.announce(environment_id=self.assignment.environment_id)

    def begin(self, key: str, detail: str = "") -> None:
        self._update(key, StepStatus.running, detail)

    def finish(self, key: str, detail: str = "") -> None:
        self._update(key, StepStatus.done, detail)

    def skip(self, key: str, detail: str = "") -> None:
        self._update(key, StepStatus.skipped, detail)

    def fail(self, key: str, detail: str = "") -> None:
        self._update(key, StepStatus.failed, detail)

    def heartbeat(self) -> None:
        run = self.session.get(JobRun, self.assignment.run_id)
        if run is not None:
            run.heartbeat_at = utcnow()
            self.session.add(run)
            self.session.commit()

    def running_step(self) -> str | None:
        run = self.session.get(JobRun, self.assignment.run_id)
        for step in run.steps if run else []:
            if step["status"] == StepStatus.running.value:
                return str(step["key"])
        return None


def still_current(session: Session, assignment: Assignment) -> tuple[JobRun, Environment] | None:
    run = session.get(JobRun, assignment.run_id)
    environment = session.get(Environment, assignment.environment_id)
    if run is None or environment is None:
        return None
    if run.status is not JobStatus.running or environment.desired_generation != assignment.target.generation:
        return None
    return run, environment


@dataclass(frozen=True, slots=True)
class Completion:
    """A run that brought its environment to what it asked: its kind, and how long that took
    from the run's creation (the request, or the reconciler's re-drive)."""

    kind: str
    seconds: float


def complete_run(
    session: Session,
    assignment: Assignment,
    *,
    public_url: str | None,
    workloads: str = "",
    devcontainer: str | None = None,
) -> Completion | None:
    """The world matches the run's generation: mark ready (or deleted).

    ``workloads`` (``Kind/name, ...``) are what rolled out: a deployment
    environment's release records them. ``devcontainer`` (JSON) is what the
    runtime took from the repository's devcontainer.json and what it did not;
    None: it found none. None when a newer change superseded the run meanwhile
    (the environment is left to that change).
    """
    session.expire_all()
    current = still_current(session, assignment)
    if current is None:
        finish_superseded(session, assignment)
        return None
    run, environment = current
    project, team = project_and_team(session, environment)
    label = f"{project.name}/{environment.name}"
    run.status, run.finished_at, run.error, run.error_code = JobStatus.succeeded, utcnow(), None, None
    completion = Completion(run.kind, (run.finished_at - run.created_at).total_seconds())
    session.add(run)
    environment.observed_generation = assignment.target.generation
    if assignment.desired_state == "present":
        environment.public_url = public_url
        environment.devcontainer = json.loads(devcontainer) if devcontainer else None
        set_phase(session, environment, Phase.ready, team_id=team.id or 0, target=label, message="Ready")
    else:
        environment.public_url = None
        environment.deleted_at = utcnow()
        set_phase(session, environment, Phase.deleted, team_id=team.id or 0, target=label, message="Deleted")
    settled = None
    if environment.kind is EnvironmentKind.deployment and assignment.desired_state == "present":
        rolled = [
            {"workload": name.strip(), "reason": "rolled out", "message": ""}
            for name in workloads.split(",")
            if name.strip()
        ]
        settled = releases.settle(
            session,
            environment,
            assignment.target.generation,
            ready=True,
            message="Ready" + (f": {len(rolled)} workload(s) rolled out" if rolled else ""),
            workloads=rolled,
            restarts=lambda: releases.GateChecks(ports.runtime()).restarts(environment.id or 0),
        )
    session.commit()
    jobruns.announce(environment_id=environment.id, project_id=project.id)
    if settled is not None:
        releases.after_settle(session, ports.queue(), settled)
    return completion


def with_port_urls(
    devcontainer: str | None, target: EnvironmentTarget, urls: UrlProvider, url: str
) -> str | None:
    """The runtime's devcontainer summary (JSON) with each forwarded port's public URL, "" for none.

    The port the app serves is on the environment's own ``url``; the others get
    one of their own where the runtime relays them (it said which port it
    published, or that every port is relayed).
    """
    if not devcontainer:
        return devcontainer
    summary = json.loads(devcontainer)
    published = summary.get("published_port")
    relayed = published is not None or bool(summary.get("ports_relayed"))
    for port in summary.get("ports", []):
        if port["port"] == published:
            port["url"] = url
        else:
            port["url"] = urls.port_url(target, int(port["port"])) if relayed else ""
    return json.dumps(summary)


def complete_preparation(session: Session, assignment: Assignment) -> None:
    """The environment's place is made (a ``prepare`` run): the run succeeds, the phase stays."""
    session.expire_all()
    current = still_current(session, assignment)
    if current is None:
        finish_superseded(session, assignment)
        return
    run, environment = current
    run.status, run.finished_at, run.error, run.error_code = JobStatus.succeeded, utcnow(), None, None
    session.add(run)
    environment.message = "No release yet; its namespace and isolation are ready"
    environment.updated_at = utcnow()
    session.add(environment)
    session.commit()
    jobruns.announce(environment_id=environment.id, project_id=environment.project_id)


def finish_superseded(session: Session, assignment: Assignment) -> None:
    run = session.get(JobRun, assignment.run_id)
    if run is not None and run.status in ACTIVE_JOB_STATUSES:
        run.status, run.finished_at = JobStatus.abandoned, utcnow()
        run.error = "superseded by a newer change"
        session.add(run)
        session.commit()


def retry_later(session: Session, assignment: Assignment, error: EnvhubError) -> bool:
    """Put the run back for a later attempt with backoff; False once attempts are spent."""
    session.rollback()
    current = still_current(session, assignment)
    if current is None:
        finish_superseded(session, assignment)
        return True
    run, environment = current
    settings = get_settings()
    teardown = assignment.desired_state == "absent"
    if run.attempts >= settings.job_max_attempts and not teardown:
        return False
    delay = min(60.0, 2.0 * 2 ** max(0, run.attempts - 1))
    run.status = JobStatus.queued
    run.retry_at = utcnow() + timedelta(seconds=delay)
    run.error, run.error_code = error.message, error.code
    session.add(run)
    environment.message = f"{error.message}; retrying in {delay:.0f}s (attempt {run.attempts})"
    environment.updated_at = utcnow()
    session.add(environment)
    session.commit()
    jobruns.announce(environment_id=environment.id)
    return True


def await_removal(session: Session, assignment: Assignment) -> float:
    """The runtime is finishing a teardown on its own: the run waits, holding no worker.

    The run goes back to the queue with a time to look again (the reconciler
    re-drives it then), sooner when the runtime's watch reports the end
    (:func:`observation.record_status`). Returns the delay.
    """
    session.expire_all()
    current = still_current(session, assignment)
    if current is None:
        finish_superseded(session, assignment)
        return 0.0
    run, environment = current
    delay = min(_REMOVAL_RECHECK_MAX, _REMOVAL_RECHECK * float(2 ** max(0, run.attempts - 1)))
    run.status = JobStatus.queued
    run.retry_at = utcnow() + timedelta(seconds=delay)
    session.add(run)  # the environment's message is the step's: what it waits for
    session.commit()
    jobruns.announce(environment_id=environment.id)
    return delay


def fail_run(session: Session, assignment: Assignment, error: EnvhubError) -> None:
    session.rollback()
    current = still_current(session, assignment)
    if current is None:
        finish_superseded(session, assignment)
        return
    run, environment = current
    project, team = project_and_team(session, environment)
    run.status, run.finished_at = JobStatus.failed, utcnow()
    run.error, run.error_code = error.message, error.code
    session.add(run)
    message = error.message + (f". {error.hint}" if error.hint else "")
    set_phase(
        session,
        environment,
        Phase.failed,
        team_id=team.id or 0,
        target=f"{project.name}/{environment.name}",
        message=message,
        error_code=error.code,
    )
    settled = None
    if environment.kind is EnvironmentKind.deployment:
        settled = releases.settle(
            session,
            environment,
            assignment.target.generation,
            ready=False,
            message=message,
            error_code=error.code,
            workloads=list(error.details.get("workloads") or []),
        )
    session.commit()
    jobruns.announce(environment_id=environment.id, project_id=project.id)
    if settled is not None:
        releases.after_settle(session, ports.queue(), settled)
