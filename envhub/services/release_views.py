"""What every face shows of deployment environments and releases, computed once.

The dashboard, REST, the CLI and MCP all read these view models: a project's
deployment environments side by side (what each runs, what waits, how they
differ), an environment's release history, and one release in full (its
gates, approvals, workloads, rendered objects, and the object-by-object diff
against what the environment runs).
"""

from __future__ import annotations

from sqlmodel import Session, col, func, select
from typing_extensions import TypedDict

from envhub.domain import humanize as fmt
from envhub.domain import releases as rel
from envhub.domain.policy import Action, TeamRole, role_at_least
from envhub.domain.principals import Principal
from envhub.domain.releases import ReleaseStatus
from envhub.errors import NotFound
from envhub.models import Approval, Artifact, Environment, Project, Release
from envhub.services.access import authorize, team_role
from envhub.services.common import Page, clamp_page
from envhub.services.environments import get_environment
from envhub.services.projects import get_project
from envhub.services.releases import current_release, deployment_environments, settings_of

TONES = {
    ReleaseStatus.rendering: "blue",
    ReleaseStatus.waiting: "amber",
    ReleaseStatus.deploying: "blue",
    ReleaseStatus.ready: "green",
    ReleaseStatus.failed: "red",
    ReleaseStatus.superseded: "gray",
    ReleaseStatus.cancelled: "gray",
}


class GateView(TypedDict):
    gate: str
    passed: bool
    reason: str


class ReleaseRow(TypedDict):
    id: int
    number: int
    environment_id: int
    environment: str
    status: str
    tone: str
    trigger: str
    triggered_by: str
    commit: str
    short_commit: str
    ref: str
    digest: str  # of the objects rendered for this environment
    chart: str  # "name version" for Helm sources
    images: dict[str, str]
    message: str
    created: str  # "3 min ago"
    created_at: str  # ISO 8601
    finished_at: str
    took: str
    source_release_id: int | None


class ApprovalView(TypedDict):
    name: str
    comment: str
    at: str


class ObjectChangeView(TypedDict):
    key: str
    change: str  # added | removed | changed
    diff: str  # unified diff of the object's YAML


class ReleaseAllowed(TypedDict):
    approve: bool
    cancel: bool
    rollback: bool


class ReleaseDetail(TypedDict):
    release: ReleaseRow
    project_id: int
    project: str
    gates: list[GateView]
    approvals: list[ApprovalView]
    approvals_needed: int
    approver_role: str
    workloads: list[dict[str, str]]
    objects: str  # the rendered objects for this environment (canonical YAML)
    notes: str  # what rendering noted (kinds without a schema, the schema version used)
    running_id: int | None  # the release the environment runs
    against_id: int | None  # what the diff compares with
    changes: list[ObjectChangeView]  # from ``against`` to this release
    allowed: ReleaseAllowed
    # Why the caller may not approve a release that waits for approvals ("" when they may, or none wait).
    approve_note: str


class EnvironmentOverview(TypedDict):
    id: int
    name: str
    phase: str
    url: str
    message: str
    promote_from: str  # "" for merges and CI
    rules: str  # "1 approval (admin+) · soak 30 min · window mon-fri 09:00-17:00 UTC"
    declares: str  # "replicas web=3 · hosts shop.example.com · env STAGE"
    running: ReleaseRow | None
    latest: ReleaseRow | None  # the newest release, when it is not the running one


class DeploymentsView(TypedDict):
    project_id: int
    project: str
    configured: bool
    source: str
    branches: str
    release_on: str
    settings: dict[str, object]  # as stored, for editing
    environments: list[EnvironmentOverview]
    # How the environments' renderings of one artifact differ (staging mirrors production).
    compared: str  # "staging → production", "" when there is nothing to compare
    differences: list[ObjectChangeView]
    can_configure: bool
    can_release: bool


def _row(release: Release, environment: Environment, artifact: Artifact) -> ReleaseRow:
    chart = artifact.chart or {}
    took = (
        fmt.span(release.started_at, release.finished_at)
        if release.started_at and release.finished_at
        else ""
    )
    return ReleaseRow(
        id=release.id or 0,
        number=release.number,
        environment_id=environment.id or 0,
        environment=environment.name,
        status=release.status.value,
        tone=TONES[release.status],
        trigger=release.trigger.value,
        triggered_by=release.triggered_by,
        commit=artifact.commit_sha,
        short_commit=artifact.commit_sha[:12],
        ref=artifact.ref,
        digest=str(artifact.digests.get(environment.name, "")),
        chart=f"{chart.get('name', '')} {chart.get('version', '')}".strip(),
        images={str(k): str(v) for k, v in (artifact.images or {}).items()},
        message=release.message,
        created=fmt.ago(release.created_at),
        created_at=release.created_at.isoformat(),
        finished_at=release.finished_at.isoformat() if release.finished_at else "",
        took=took,
        source_release_id=release.source_release_id,
    )


def _rules(promotion: rel.Promotion) -> str:
    parts = []
    if promotion.approvals:
        parts.append(f"{promotion.approvals} approval(s) ({promotion.approver_role.value}+)")
    gates = promotion.gates
    if gates.soak_minutes is not None:
        parts.append(f"soak {gates.soak_minutes} min")
    if gates.github_checks:
        parts.append("GitHub checks green")
    if gates.health_url:
        parts.append(f"health {gates.health_url}")
    if gates.window is not None:
        parts.append(f"window {gates.window.describe()}")
    if promotion.auto_rollback:
        parts.append("rolls back on failure")
    return " · ".join(parts) or "no approval or gate"


def _declares(overrides: rel.EnvironmentOverrides) -> str:
    parts = []
    if overrides.replicas:
        parts.append("replicas " + ", ".join(f"{k}={v}" for k, v in sorted(overrides.replicas.items())))
    if overrides.hosts:
        parts.append("hosts " + ", ".join(sorted(overrides.hosts.values())))
    if overrides.env:
        parts.append("env " + ", ".join(sorted(overrides.env)))
    if overrides.values:
        parts.append("values " + ", ".join(sorted(overrides.values)))
    return " · ".join(parts) or "nothing of its own"


def _changes(old: str, new: str) -> list[ObjectChangeView]:
    return [
        ObjectChangeView(key=change.key, change=change.change, diff="\n".join(change.lines))
        for change in rel.diff_objects(rel.load_objects(old), rel.load_objects(new))
    ]


def _latest(session: Session, environment_id: int) -> Release | None:
    return session.exec(
        select(Release).where(Release.environment_id == environment_id).order_by(col(Release.id).desc())
    ).first()


def deployments_view(*, session: Session, actor: Principal, project_id: int) -> DeploymentsView:
    project = get_project(session=session, actor=actor, project_id=project_id)
    settings = settings_of(project)
    role = team_role(session, actor, project.team_id)
    can_configure = role in ("admin", "owner")
    environments: list[EnvironmentOverview] = []
    artifacts: dict[int, Artifact] = {}

    def artifact_of(release: Release) -> Artifact:
        if release.artifact_id not in artifacts:
            found = session.get(Artifact, release.artifact_id)
            assert found is not None
            artifacts[release.artifact_id] = found
        return artifacts[release.artifact_id]

    for environment in deployment_environments(session, project_id):
        declared = None
        if settings is not None:
            declared = settings.declared(environment.name)
        running = current_release(session, environment.id or 0)
        latest = _latest(session, environment.id or 0)
        environments.append(
            EnvironmentOverview(
                id=environment.id or 0,
                name=environment.name,
                phase=environment.phase.value,
                url=environment.public_url or "",
                message=environment.message,
                promote_from=(declared.promotion.promote_from or "") if declared else "",
                rules=_rules(declared.promotion) if declared else "no longer in the settings",
                declares=_declares(declared.overrides) if declared else "",
                running=_row(running, environment, artifact_of(running)) if running else None,
                latest=_row(latest, environment, artifact_of(latest))
                if latest is not None and (running is None or latest.id != running.id)
                else None,
            )
        )
    compared, differences = "", []
    newest = session.exec(
        select(Artifact)
        .where(Artifact.project_id == project_id, Artifact.status == rel.ArtifactStatus.rendered)
        .order_by(col(Artifact.id).desc())
    ).first()
    if settings is not None and newest is not None:
        for env in settings.environments:
            source = env.promotion.promote_from
            if source and source in newest.rendered and env.name in newest.rendered:
                compared = f"{source} → {env.name}"
                differences = _changes(newest.rendered[source], newest.rendered[env.name])
                break
    return DeploymentsView(
        project_id=project_id,
        project=project.name,
        configured=settings is not None,
        source=settings.source.describe() if settings else "",
        branches=", ".join([*settings.branches, *settings.release_branches]) if settings else "",
        release_on=settings.release_on if settings else "",
        settings=dict(project.deployments or {}),
        environments=environments,
        compared=compared,
        differences=differences,
        can_configure=can_configure,
        can_release=role in ("member", "admin", "owner"),
    )


def list_releases(
    *, session: Session, actor: Principal, environment_id: int, offset: int = 0, limit: int = 20
) -> Page[ReleaseRow]:
    environment = get_environment(session=session, actor=actor, environment_id=environment_id)
    offset, limit = clamp_page(offset, limit)
    total = session.exec(
        select(func.count()).select_from(Release).where(Release.environment_id == environment_id)
    ).one()
    rows = session.exec(
        select(Release, Artifact)
        .join(Artifact, col(Artifact.id) == Release.artifact_id)
        .where(Release.environment_id == environment_id)
        .order_by(col(Release.id).desc())
        .offset(offset)
        .limit(limit)
    ).all()
    return Page(
        items=[_row(release, environment, artifact) for release, artifact in rows],
        total=int(total),
        offset=offset,
        limit=limit,
    )


def release_detail(
    *, session: Session, actor: Principal, release_id: int, against: int | None = None
) -> ReleaseDetail:
    """One release in full; ``changes`` go from ``against`` (by default what the environment runs)."""
    release = session.get(Release, release_id)
    if release is None:
        raise NotFound(f"release {release_id} was not found", details={"release_id": release_id})
    environment = get_environment(session=session, actor=actor, environment_id=release.environment_id)
    project = session.get(Project, release.project_id)
    artifact = session.get(Artifact, release.artifact_id)
    assert project is not None
    assert artifact is not None
    authorize(session, actor, project.team_id, Action.project_read, what=f"release {release_id}")
    settings = settings_of(project)
    declared = settings.declared(environment.name) if settings else None
    promotion = declared.promotion if declared else rel.Promotion()
    running = current_release(session, environment.id or 0)
    base_id = against if against is not None else (running.id if running else None)
    base_text = ""
    if base_id is not None:
        base = session.get(Release, base_id)
        if base is None or base.environment_id != release.environment_id:
            raise NotFound(
                f"release {base_id} is not a release of {environment.name}", details={"against": base_id}
            )
        base_artifact = session.get(Artifact, base.artifact_id)
        assert base_artifact is not None
        base_text = str(base_artifact.rendered.get(environment.name, ""))
    text = str(artifact.rendered.get(environment.name, ""))
    approvals = session.exec(
        select(Approval).where(Approval.release_id == release_id).order_by(col(Approval.id))
    ).all()
    role = team_role(session, actor, project.team_id)
    open_ = release.status in rel.OPEN_STATUSES
    note = ""
    if open_ and promotion.approvals > 0:
        if release.triggered_by_user_id is not None and release.triggered_by_user_id == actor.user_id:
            note = "You triggered this release, so someone else approves it."
        elif actor.user_id in {a.user_id for a in approvals}:
            note = "You approved it."
        elif not role_at_least(role, promotion.approver_role):
            note = f"Approving takes a team {promotion.approver_role.value} or above."
    return ReleaseDetail(
        release=_row(release, environment, artifact),
        project_id=project.id or 0,
        project=project.name,
        gates=[
            GateView(gate=str(g["gate"]), passed=bool(g["passed"]), reason=str(g["reason"]))
            for g in release.gates
        ],
        approvals=[ApprovalView(name=a.name, comment=a.comment, at=fmt.ago(a.created_at)) for a in approvals],
        approvals_needed=promotion.approvals,
        approver_role=promotion.approver_role.value,
        workloads=[{str(k): str(v) for k, v in item.items()} for item in release.workloads],
        objects=text,
        notes=artifact.notes,
        running_id=running.id if running else None,
        against_id=base_id,
        changes=_changes(base_text, text) if base_id != release.id else [],
        approve_note=note,
        allowed=ReleaseAllowed(
            approve=open_
            and promotion.approvals > 0
            and role_at_least(role, promotion.approver_role)
            and release.triggered_by_user_id != actor.user_id
            and actor.user_id not in {a.user_id for a in approvals},
            cancel=open_ and role_at_least(role, TeamRole.member),
            rollback=release.status in (ReleaseStatus.ready, ReleaseStatus.superseded)
            and release.started_at is not None
            and (running is None or running.id != release.id)
            and role_at_least(role, TeamRole.admin),
        ),
    )


def rows_of(session: Session, made: list[Release]) -> list[ReleaseRow]:
    """Rows of releases the caller just made (making them was authorized; a CI token cannot read more)."""
    rows = []
    for release in made:
        environment = session.get(Environment, release.environment_id)
        artifact = session.get(Artifact, release.artifact_id)
        assert environment is not None
        assert artifact is not None
        rows.append(_row(release, environment, artifact))
    return rows
