"""View models of projects: the projects list and one project's page, computed once.

Like ``environment_views.py``: plain JSON-ready dicts every face shows the
same way, built from the use cases' rows inside ``services/``.
"""

from __future__ import annotations

from typing import Any, TypedDict

from sqlmodel import Session

from envhub.domain import humanize as fmt
from envhub.domain.backing import CATALOG, ServiceDeclaration, parse_backing
from envhub.domain.catalog import Catalog, CatalogEntry, resolve_parameters
from envhub.domain.kube import parse_manifests
from envhub.domain.principals import Principal
from envhub.domain.url_access import URL_ACCESS_LABELS, UrlAccessName, parse_url_access
from envhub.errors import ConfigurationError, EnvhubError, ValidationFailed
from envhub.models import Project, Team
from envhub.queue.events import project_channel
from envhub.services import projects
from envhub.services.backing import operator_catalog
from envhub.services.environment_views import EnvironmentRow, environment_rows
from envhub.services.identity_views import SharedRow, shared_rows
from envhub.services.pages import PageInfo, page_info


class ProjectRow(TypedDict):
    id: int
    name: str
    href: str
    team: str
    description: str
    repo: str
    environments: str
    created_at: str
    created: str


class ProjectHeader(TypedDict):
    id: int
    team_id: int
    name: str
    description: str
    repo: str
    ref: str
    command: str
    health_path: str
    devcontainer: str  # a named dev container configuration, or "" for the default places
    team: str
    created: str
    created_stamp: str
    manifests: str  # "3 documents", or "" without raw manifests
    egress: str  # "2 CIDRs, 1 namespace", or "" without an allowlist
    url_access: UrlAccessName  # who may open its environments' URLs
    url_access_label: str  # the same in words: "Anyone with the link", ...
    backing: list[DeclaredService]  # managed services every environment gets
    # Development environments sleep after this many idle minutes, and are deleted after this
    # many idle hours (0: never); "" in the words when never.
    sleep_after_minutes: int
    ttl_hours: int
    idle_label: str  # "Sleeps after 2 h idle; deleted after 3 d idle", or "Never sleeps or expires"


class DeclaredParameter(TypedDict):
    name: str
    value: str  # the project's value, or the catalog's default it takes


class DeclaredService(TypedDict):
    """A managed service the project declares (``settings`` is the declaration, to send back changed)."""

    name: str
    kind: str
    label: str  # "PostgreSQL 16", "RabbitMQ (catalog)"
    variables: list[str]  # the names its environments' workloads receive
    parameters: list[DeclaredParameter]  # a catalog service's, in the entry's order; [] for other kinds
    settings: dict[str, Any]


class ServiceRow(TypedDict):
    name: str
    image: str
    ports: str
    replicas: str


class ProjectsOverview(TypedDict):
    rows: list[ProjectRow]
    page: PageInfo
    shared: list[SharedRow]  # environments of other teams shared with the caller
    channels: list[str]  # change-notification channels of the listed projects


class ProjectOverview(TypedDict):
    header: ProjectHeader
    services: list[ServiceRow]
    rows: list[EnvironmentRow]
    page: PageInfo


EMPTY_HEADER = ProjectHeader(
    id=0,
    team_id=0,
    name="",
    description="",
    repo="",
    ref="",
    command="",
    health_path="",
    devcontainer="",
    team="",
    created="",
    created_stamp="",
    manifests="",
    egress="",
    url_access="public",
    url_access_label="",
    backing=[],
    sleep_after_minutes=0,
    ttl_hours=0,
    idle_label="",
)


# -- builders (internal: they take rows) -------------------------------------


def manifest_count(text: str | None) -> str:
    if not text or not text.strip():
        return ""
    try:
        count = len(parse_manifests(text))
    except EnvhubError:  # stored before a stricter check: say so rather than fail the view
        return "unreadable (redeploy shows the error)"
    return f"{count} document{'' if count == 1 else 's'}"


_EGRESS_NOUNS = (("cidrs", "CIDR", "CIDRs"), ("namespaces", "namespace", "namespaces"),
                 ("services", "service", "services"))  # fmt: skip


def egress_summary(egress: dict[str, Any]) -> str:
    parts = []
    for key, one, many in _EGRESS_NOUNS:
        count = len(egress.get(key) or [])
        if count:
            parts.append(f"{count} {one if count == 1 else many}")
    return ", ".join(parts)


def service_rows(services: list[dict[str, Any]]) -> list[ServiceRow]:
    return [
        ServiceRow(
            name=str(service.get("name", "")),
            image=str(service.get("image", "")),
            ports=", ".join(str(port) for port in service.get("ports") or []),
            replicas=str(service.get("replicas", 1)),
        )
        for service in services
    ]


def project_row(summary: projects.ProjectSummary) -> ProjectRow:
    project = summary.project
    return ProjectRow(
        id=project.id or 0,
        name=project.name,
        href=f"/projects/{project.id}",
        team=summary.team,
        description=project.description,
        repo=project.repo_url or "",
        environments=str(summary.environments),
        created_at=project.created_at.isoformat(),
        created=fmt.ago(project.created_at),
    )


def project_header(project: Project, team: str) -> ProjectHeader:
    access = parse_url_access(project.url_access)
    return ProjectHeader(
        id=project.id or 0,
        team_id=project.team_id,
        name=project.name,
        description=project.description,
        repo=project.repo_url or "",
        ref=project.default_ref or "",
        command=project.command,
        health_path=project.health_path,
        devcontainer=project.devcontainer or "",
        team=team,
        created=fmt.ago(project.created_at),
        created_stamp=fmt.stamp(project.created_at),
        manifests=manifest_count(project.manifests),
        egress=egress_summary(project.egress),
        url_access=access.value,
        url_access_label=URL_ACCESS_LABELS[access],
        backing=declared_services(project),
        sleep_after_minutes=project.sleep_after_minutes or 0,
        ttl_hours=project.ttl_hours or 0,
        idle_label=idle_label(project.sleep_after_minutes, project.ttl_hours),
    )


def idle_label(sleep_after_minutes: int | None, ttl_hours: int | None) -> str:
    """A project's idle sleep and TTL in words (development environments)."""
    parts = []
    if sleep_after_minutes:
        hours, minutes = divmod(sleep_after_minutes, 60)
        said = " ".join(
            part for part in (f"{hours} h" if hours else "", f"{minutes} min" if minutes else "") if part
        )
        parts.append(f"sleep after {said} idle")
    if ttl_hours:
        days, hours = divmod(ttl_hours, 24)
        said = f"{days} d" if days and not hours else f"{ttl_hours} h"
        parts.append(f"are deleted after {said} idle")
    return "Development environments " + " and ".join(parts) if parts else "Never sleep or expire"


def declared_services(project: Project) -> list[DeclaredService]:
    """The project's managed services; a stored list that no longer validates shows as none.

    A catalog service is shown with its entry's title, parameters and variables while the
    operator's catalog offers the entry; without it, with what the declaration itself says.
    """
    try:
        settings = parse_backing(project.backing)
    except ValidationFailed:
        return []
    catalog = _catalog_or_none() if any(service.kind == CATALOG for service in settings.services) else None
    declared = []
    for service in settings.services:
        entry = catalog.get(service.entry) if catalog is not None and service.kind == CATALOG else None
        declared.append(
            DeclaredService(
                name=service.name,
                kind=service.kind,
                label=f"{entry.label} (catalog)" if entry is not None else service.label,
                variables=sorted(service.variable_names(entry.variables if entry else ()).values()),
                parameters=[
                    DeclaredParameter(name=name, value=value)
                    for name, value in _parameters(service, entry).items()
                ],
                settings=service.model_dump(mode="json", exclude_defaults=True),
            )
        )
    return declared


def _catalog_or_none() -> Catalog | None:
    try:
        return operator_catalog()
    except ConfigurationError:  # the file broke after envhub started: the page still shows the rest
        return None


def _parameters(service: ServiceDeclaration, entry: CatalogEntry | None) -> dict[str, str]:
    """What the instances get: the project's values and the entry's defaults for the rest."""
    if entry is None:
        return dict(service.parameters)
    try:
        return resolve_parameters(entry, service.parameters)
    except ValidationFailed:  # the operator changed the entry since: show what was declared
        return dict(service.parameters)


# -- what the faces call -----------------------------------------------------


def projects_overview(
    *, session: Session, actor: Principal, offset: int = 0, limit: int = 20, search: str = ""
) -> ProjectsOverview:
    """The projects the caller can see (by name), and the environments shared with them."""
    page = projects.list_projects(
        session=session, actor=actor, offset=offset, limit=limit, search=search.strip()
    )
    return ProjectsOverview(
        rows=[project_row(item) for item in page.items],
        page=page_info(page),
        shared=shared_rows(session=session, actor=actor),
        channels=[project_channel(item.project.id or 0) for item in page.items],
    )


def _header(session: Session, project: Project) -> ProjectHeader:
    team = session.get(Team, project.team_id)
    return project_header(project, team.name if team else "")


def project_summary(*, session: Session, actor: Principal, project_id: int) -> ProjectHeader:
    """One project's defaults and its team's name."""
    return _header(session, projects.get_project(session=session, actor=actor, project_id=project_id))


def project_overview(
    *, session: Session, actor: Principal, project_id: int, offset: int = 0, limit: int = 20
) -> ProjectOverview:
    """A project's defaults, its container services and a page of its environments."""
    project = projects.get_project(session=session, actor=actor, project_id=project_id)
    rows, page = environment_rows(
        session=session, actor=actor, project_id=project_id, offset=offset, limit=limit
    )
    return ProjectOverview(
        header=_header(session, project), services=service_rows(project.services), rows=rows, page=page
    )
