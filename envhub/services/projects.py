"""Projects: create, list, read, update, delete."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from envhub.config import get_settings
from envhub.domain.backing import CATALOG, BackingSettings, check_variable_clash, parse_backing
from envhub.domain.catalog import resolve_parameters
from envhub.domain.idleness import (
    DEFAULT_SLEEP_AFTER_MINUTES,
    MAX_SLEEP_AFTER_MINUTES,
    MAX_TTL_HOURS,
    check_minutes,
)
from envhub.domain.kube import EgressDenyList, check_egress, check_manifests, parse_manifests
from envhub.domain.naming import validate_label
from envhub.domain.phases import Phase
from envhub.domain.policy import Action
from envhub.domain.principals import Principal
from envhub.domain.repos import require_allowed
from envhub.domain.specs import DEFAULT_COMMAND, EnvironmentKind, EnvironmentSpec, parse_spec
from envhub.domain.url_access import UrlAccess, parse_url_access
from envhub.errors import Conflict, NotFound, ValidationFailed
from envhub.integrations.backing.catalog import load_catalog
from envhub.models import Environment, InstanceState, Project, ServiceInstance, Team
from envhub.models.base import utcnow
from envhub.services import cursors, jobruns, ports
from envhub.services.access import owner_confirms
from envhub.services.common import (
    AuditTarget,
    Page,
    audited,
    authorize,
    clamp_page,
    contains,
    teams_of,
)
from envhub.services.jobruns import RESYNC

_WORKLOAD_FIELDS = ("services", "manifests", "quota", "egress")
_EDITABLE = (
    "description", "repo_url", "default_ref", "command", "env", "health_path", "devcontainer",
    "services", "manifests", "quota", "egress", "url_access", "backing", "sleep_after_minutes", "ttl_hours",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ProjectSummary:
    project: Project
    team: str
    environments: int


def project_defaults(project: Project) -> EnvironmentSpec:
    return parse_spec(
        {
            "command": project.command,
            "env": dict(project.env),
            "repo_url": project.repo_url,
            "ref": project.default_ref,
            "health_path": project.health_path,
            "devcontainer": project.devcontainer,
            "services": list(project.services),
            "manifests": project.manifests,
            "quota": dict(project.quota),
            "egress": dict(project.egress),
        }
    )


def _egress_deny_list() -> EgressDenyList:
    """The operator's deny list as settings give it (the runtime adds the API server's addresses)."""
    settings = get_settings()
    own = [settings.kube_own_namespace] if settings.kube_own_namespace else []
    return EgressDenyList(
        cidrs=settings.egress_deny_cidrs, namespaces=(*settings.egress_deny_namespaces, *own)
    )


def _check_catalog(backing: BackingSettings, reserved: Mapping[str, str]) -> None:
    """Catalog services: the entry exists, the parameters fit it, no variable is set twice."""
    chosen = [service for service in backing.services if service.kind == CATALOG]
    if not chosen:
        return
    path = get_settings().services_catalog
    if path is None:
        raise ValidationFailed(
            "this envhub has no catalog of other services",
            hint="Ask the operator for one (ENVHUB_SERVICES_CATALOG), or use postgres, redis or bucket.",
            details={"field": "backing"},
        )
    catalog = load_catalog(path)
    taken = dict.fromkeys(reserved, "the project")
    for service in backing.services:
        if service.kind != CATALOG:
            taken.update(dict.fromkeys(service.variable_names().values(), service.name))
    for service in chosen:
        entry = catalog.get(service.entry)
        if entry is None:
            offered = ", ".join(item.name for item in catalog.entries) or "none"
            raise ValidationFailed(
                f"service {service.name}: the catalog has no entry {service.entry!r}",
                hint=f"The catalog offers: {offered}.",
                details={"service": service.name, "entry": service.entry},
            )
        resolve_parameters(entry, service.parameters)
        for name in service.variable_names(entry.variables).values():
            if name in taken:
                raise ValidationFailed(
                    f"service {service.name} would set {name}, which {taken[name]} already sets",
                    hint="Give the service a prefix (such as MQ_) or rename the variable.",
                    details={"service": service.name, "variables": name},
                )
            taken[name] = service.name


def _check_defaults(values: dict[str, Any]) -> dict[str, Any]:
    """Validate project defaults with the same rules as an environment spec."""
    spec = parse_spec(
        {
            "command": values.get("command") or DEFAULT_COMMAND,
            "env": values.get("env") or {},
            "repo_url": values.get("repo_url"),
            "ref": values.get("default_ref"),
            "health_path": values.get("health_path") or "/",
            "devcontainer": values.get("devcontainer") or None,
            "services": values.get("services") or [],
            "manifests": values.get("manifests") or None,
            "quota": values.get("quota") or {},
            "egress": values.get("egress") or {},
        }
    )
    url_access = parse_url_access(values.get("url_access") or UrlAccess.public.value)
    backing = parse_backing(values.get("backing"))
    check_variable_clash(backing, spec.env)
    _check_catalog(backing, spec.env)
    if spec.manifests:
        # Refuse broken YAML and what the guard refuses now, not at deploy time.
        check_manifests(parse_manifests(spec.manifests))
    check_egress(spec.egress, _egress_deny_list())
    require_allowed(spec.repo_url, allow_local=get_settings().allow_local_repos)
    return {
        "command": spec.command,
        "env": spec.env,
        "repo_url": spec.repo_url,
        "default_ref": spec.ref,
        "health_path": spec.health_path,
        "devcontainer": spec.devcontainer,
        "services": [service.model_dump(mode="json") for service in spec.services],
        "manifests": spec.manifests,
        # Only what differs from the platform default is stored, so a project
        # follows later changes of the defaults.
        "quota": spec.quota.model_dump(mode="json", exclude_defaults=True),
        "egress": spec.egress.model_dump(mode="json", exclude_defaults=True),
        "url_access": url_access.value,
        "backing": [service.model_dump(mode="json", exclude_defaults=True) for service in backing.services],
        # 0 or None turns each off (domain/idleness.py).
        "sleep_after_minutes": check_minutes(
            values.get("sleep_after_minutes", DEFAULT_SLEEP_AFTER_MINUTES),
            field="sleep_after_minutes",
            maximum=MAX_SLEEP_AFTER_MINUTES,
        ),
        "ttl_hours": check_minutes(values.get("ttl_hours"), field="ttl_hours", maximum=MAX_TTL_HOURS),
    }


def create_project(
    *,
    session: Session,
    actor: Principal,
    team_id: int,
    name: str,
    description: str = "",
    repo_url: str | None = None,
    default_ref: str | None = None,
    command: str | None = None,
    env: dict[str, str] | None = None,
    health_path: str | None = None,
    devcontainer: str | None = None,
    workloads: dict[str, Any] | None = None,
    url_access: str | None = None,
    backing: list[dict[str, Any]] | None = None,
    sleep_after_minutes: int | None = DEFAULT_SLEEP_AFTER_MINUTES,
    ttl_hours: int | None = None,
) -> Project:
    """Create a project. ``workloads`` may carry ``services``, ``manifests``,
    ``quota`` and ``egress`` for image-based runtimes (validated like a spec);
    ``backing`` lists its managed services (domain/backing.py)."""
    # The audit record names the team only if it exists (a made-up id must not break the record).
    target = AuditTarget("project", name=name, team_id=team_id if session.get(Team, team_id) else None)
    with audited(session, actor, "project.create", target):
        authorize(session, actor, team_id, Action.project_create, what="team")
        validate_label(name, field="project name")
        if len(description) > 2000:
            raise ValidationFailed("description is longer than 2000 characters")
        defaults = _check_defaults(
            {
                "command": command,
                "env": env,
                "repo_url": repo_url,
                "default_ref": default_ref,
                "health_path": health_path,
                "devcontainer": devcontainer,
                "url_access": url_access,
                "backing": backing,
                "sleep_after_minutes": sleep_after_minutes,
                "ttl_hours": ttl_hours,
                **{key: value for key, value in (workloads or {}).items() if key in _WORKLOAD_FIELDS},
            }
        )
        unknown = set(workloads or {}) - set(_WORKLOAD_FIELDS)
        if unknown:
            raise ValidationFailed(f"unknown workload field(s): {', '.join(sorted(unknown))}")
        existing = session.exec(
            select(Project).where(Project.team_id == team_id, Project.name == name)
        ).first()
        if existing is not None:
            raise Conflict(
                f"a project named {name!r} already exists in this team",
                details={"field": "name", "project_id": existing.id},
            )
        project = Project(
            team_id=team_id,
            name=name,
            description=description.strip(),
            created_by_id=actor.user_id,
            **defaults,
        )
        session.add(project)
        try:
            session.flush()
        except IntegrityError as exc:
            raise Conflict(f"a project named {name!r} already exists in this team") from exc
        target.id = project.id
        target.name = name
        target.team_id = team_id
        target.details = {"repo_url": project.repo_url}
    return project


def list_projects(
    *,
    session: Session,
    actor: Principal,
    offset: int = 0,
    limit: int = 20,
    search: str = "",
    cursor: str | None = None,
) -> Page[ProjectSummary]:
    """The projects the caller can see, by name (then id), each with its count of live environments.

    Paged by ``offset`` (the dashboard) or after ``cursor`` (programs; ``offset``
    is then ignored), as ``environments.list_environments``.
    """
    offset, limit = clamp_page(offset, limit)
    visible = teams_of(session, actor)
    live_envs = (
        select(Environment.project_id, func.count().label("n"))
        .where(Environment.phase != Phase.deleted)
        .group_by(col(Environment.project_id))
        .subquery()
    )
    where: list[Any] = []
    if visible is not None:
        where.append(col(Project.team_id).in_(visible))
    if search.strip():
        where.append(func.lower(col(Project.name)).like(contains(search.strip()), escape="\\"))
    total = session.exec(select(func.count()).select_from(Project).where(*where)).one()
    if cursor:
        name, after = cursors.decode(cursor, "projects", (str, int))
        where.append(or_(col(Project.name) > name, (col(Project.name) == name) & (col(Project.id) > after)))
        offset = 0
    query = (
        select(Project, Team.name, func.coalesce(live_envs.c.n, 0))
        .join(Team, col(Team.id) == Project.team_id)
        .outerjoin(live_envs, live_envs.c.project_id == Project.id)
        .where(*where)
        .order_by(col(Project.name), col(Project.id))
    )
    rows = list(session.exec(query.offset(offset).limit(limit + 1)))
    last = rows[limit - 1][0] if len(rows) > limit else None
    return Page(
        items=[ProjectSummary(project=p, team=t, environments=int(n)) for p, t, n in rows[:limit]],
        total=int(total),
        offset=offset,
        limit=limit,
        next_cursor=cursors.encode("projects", (last.name, last.id or 0)) if last else None,
    )


def get_project(*, session: Session, actor: Principal, project_id: int) -> Project:
    project = session.get(Project, project_id)
    if project is None:
        raise NotFound(f"project {project_id} was not found", details={"project_id": project_id})
    authorize(session, actor, project.team_id, Action.project_read, what=f"project {project_id}")
    return project


def update_project(
    *,
    session: Session,
    actor: Principal,
    project_id: int,
    changes: dict[str, Any],
    confirm: str | None = None,
) -> Project:
    """Change a project's defaults. Dropping a managed database that a deployment environment
    holds (its data goes, after a last backup) takes a team owner who confirms with the project's name."""
    target = AuditTarget("project", id=project_id)
    with audited(session, actor, "project.update", target):
        project = get_project(session=session, actor=actor, project_id=project_id)
        target.name, target.team_id = project.name, project.team_id
        authorize(session, actor, project.team_id, Action.project_update, what="project")
        unknown = set(changes) - set(_EDITABLE)
        if unknown:
            raise ValidationFailed(
                f"cannot change {', '.join(sorted(unknown))}", details={"fields": sorted(unknown)}
            )
        current = {key: getattr(project, key) for key in _EDITABLE}
        merged = _check_defaults({**current, **changes})
        merged["description"] = str(changes.get("description", project.description)).strip()
        changed = {k: v for k, v in merged.items() if getattr(project, k) != v}
        for key, value in changed.items():
            setattr(project, key, value)
        project.updated_at = utcnow()
        session.add(project)
        if "url_access" in changed:
            target.details["rerouted"] = _reroute(session, project)
        if "backing" in changed:  # ready environments get (or lose) the services now
            _protect_databases(session, actor, project, current["backing"], confirm)
            target.details["resynced"] = _resync(session, project)
        target.id = project.id
        target.name = project.name
        target.team_id = project.team_id
        target.details = {**target.details, "changed": sorted(changed)}
    return project


def _protect_databases(
    session: Session, actor: Principal, project: Project, before: Any, confirm: str | None
) -> None:
    """Refuse to drop a deployment environment's database unless a team owner confirms."""
    kept = {(service.name, service.kind) for service in parse_backing(project.backing).services}
    dropped = [
        service.name
        for service in parse_backing(before).services
        if service.kind == "postgres" and (service.name, service.kind) not in kept
    ]
    if not dropped:
        return
    holders = session.exec(
        select(Environment.name, ServiceInstance.service)
        .join(ServiceInstance, col(ServiceInstance.environment_id) == Environment.id)
        .where(
            Environment.project_id == project.id,
            Environment.kind == EnvironmentKind.deployment,
            col(Environment.phase) != Phase.deleted,
            col(ServiceInstance.service).in_(dropped),
            ServiceInstance.state == InstanceState.ready,
        )
    ).all()
    if not holders:
        return
    what = ", ".join(sorted(f"{environment}'s {service}" for environment, service in holders))
    owner_confirms(
        session,
        actor,
        project.team_id,
        action="project.update",
        confirm=confirm,
        expected=project.name,
        forbidden=f"removing the service deletes {what}; only a team owner may delete a deployment database",
        unconfirmed=f"removing the service deletes {what} (a last backup is kept for its retention); "
        "confirm with the project's name",
        hint=f"Send confirm={project.name!r} with the change.",
    )


def _reroute(session: Session, project: Project) -> list[int]:
    """Re-apply the project's ready environments where their route lives outside envhub.

    envhub's own gateway reads ``url_access`` on the next request; an Ingress
    or a tunnel rule has to be changed (to or from envhub's gateway). A resync
    run per environment, committed with the change, is dispatched by the
    reconciler within seconds; an environment busy with a run of its own
    picks the change up in that run.
    """
    if ports.url_provider().name == "local":
        return []
    return _resync(session, project)


def _resync(session: Session, project: Project) -> list[int]:
    """A resync run for each of the project's ready environments that has none running."""
    ids: list[int] = []
    for environment in session.exec(
        select(Environment).where(
            Environment.project_id == project.id,
            Environment.phase == Phase.ready,
            Environment.desired_state == "present",
        )
    ):
        assert environment.id is not None
        if jobruns.active_runs(session, environment.id):
            continue
        jobruns.new_run(
            session, environment_id=environment.id, kind=RESYNC, generation=environment.desired_generation
        )
        ids.append(environment.id)
    return ids


def delete_project(*, session: Session, actor: Principal, project_id: int) -> None:
    target = AuditTarget("project", id=project_id)
    with audited(session, actor, "project.delete", target):
        project = get_project(session=session, actor=actor, project_id=project_id)
        target.name, target.team_id = project.name, project.team_id
        authorize(session, actor, project.team_id, Action.project_delete, what="project")
        live = session.exec(
            select(func.count())
            .select_from(Environment)
            .where(Environment.project_id == project_id, Environment.phase != Phase.deleted)
        ).one()
        if live:
            raise Conflict(
                f"project {project.name!r} still has {live} environment(s)",
                hint="Delete its environments first.",
                details={"environments": int(live)},
            )
        # Deleted environments keep their rows for the audit trail; detach them.
        for environment in session.exec(select(Environment).where(Environment.project_id == project_id)):
            session.delete(environment)
        session.delete(project)
