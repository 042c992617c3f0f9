"""``/api/v1/projects``: list (by cursor), create, read, change and delete projects.

Thin translations onto ``services/projects.py`` and its view models; the use
cases authorize and audit.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from envhub.api.v1.models import (
    ENV_NAME,
    NO_NUL,
    Caller,
    Cursor,
    CursorPage,
    Id,
    Label,
    Limit,
    Number,
    Text,
    answers,
    model_of,
)
from envhub.domain.backing import MAX_SERVICES, ServiceDeclaration
from envhub.domain.idleness import DEFAULT_SLEEP_AFTER_MINUTES, MAX_SLEEP_AFTER_MINUTES, MAX_TTL_HOURS
from envhub.domain.url_access import UrlAccessName
from envhub.domain.workloads import ContainerService, EgressAllowlist, QuotaSpec
from envhub.services import listing, project_views, projects
from envhub.services.project_views import ProjectHeader, ProjectRow
from envhub.services.units import read_only, unit_of_work

router = APIRouter(prefix="/api/v1", tags=["projects"])

ProjectRowModel = model_of(ProjectRow)
ProjectModel = model_of(ProjectHeader)

URL_ACCESS = (
    "Who may open the project's environment URLs: 'public' (anyone with the link) or 'sign_in' "
    "(people signed in to envhub who may see the environment)."
)


BACKING = (
    "Managed services every environment of the project gets (PostgreSQL, Redis, an S3 bucket), "
    "unless the environment runs one itself; their connection details reach the workloads as "
    "variables (DATABASE_URL, REDIS_URL, S3_*). Sent, the list replaces the project's; [] removes all."
)

Backing = Annotated[list[ServiceDeclaration] | None, Field(max_length=MAX_SERVICES, description=BACKING)]


class Workloads(BaseModel):
    """Defaults for image-based runtimes (Kubernetes); validated like an environment's spec."""

    model_config = ConfigDict(extra="forbid")

    services: list[ContainerService] | None = Field(default=None, max_length=20)
    manifests: Text | None = Field(default=None, max_length=200_000)
    quota: QuotaSpec | None = None
    egress: EgressAllowlist | None = None


DEVCONTAINER = (
    "A named dev container configuration: .devcontainer/<name>/devcontainer.json. Unset: "
    ".devcontainer/devcontainer.json or .devcontainer.json, when the repository has one."
)


SLEEP = (
    "Development environments sleep after this many minutes without activity (their processes stop, "
    "their workspace stays; a visit wakes them). 0 turns idle sleep off."
)
TTL = (
    "Development environments not made for a pull request are deleted after this many hours without "
    "activity. 0 turns the TTL off. A pinned environment neither sleeps nor expires."
)


class ProjectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    team_id: Number = Field(ge=1, le=2**31 - 1)
    name: Label
    description: Text = Field(default="", max_length=2000)
    repo_url: Text | None = Field(default=None, max_length=2000)
    default_ref: Text | None = Field(default=None, max_length=255)
    command: Text | None = Field(default=None, max_length=4000)
    env: dict[Annotated[str, Field(max_length=200, pattern=ENV_NAME)], Text] | None = None
    health_path: Text | None = Field(default=None, max_length=2000)
    devcontainer: Text | None = Field(default=None, max_length=100, description=DEVCONTAINER)
    url_access: UrlAccessName = Field(default="public", description=URL_ACCESS)
    workloads: Workloads | None = None
    backing: list[ServiceDeclaration] | None = Field(
        default=None, max_length=MAX_SERVICES, description=BACKING
    )
    sleep_after_minutes: int = Field(
        default=DEFAULT_SLEEP_AFTER_MINUTES, strict=True, ge=0, le=MAX_SLEEP_AFTER_MINUTES, description=SLEEP
    )
    ttl_hours: int = Field(default=0, strict=True, ge=0, le=MAX_TTL_HOURS, description=TTL)


class ProjectChanges(BaseModel):
    """Only the fields sent are changed."""

    model_config = ConfigDict(extra="forbid")

    description: Text | None = Field(default=None, max_length=2000)
    repo_url: Text | None = Field(default=None, max_length=2000)
    default_ref: Text | None = Field(default=None, max_length=255)
    command: Text | None = Field(default=None, max_length=4000)
    env: dict[Annotated[str, Field(max_length=200, pattern=ENV_NAME)], Text] | None = None
    health_path: Text | None = Field(default=None, max_length=2000)
    devcontainer: Text | None = Field(default=None, max_length=100, description=DEVCONTAINER)
    url_access: UrlAccessName | None = Field(default=None, description=URL_ACCESS)
    services: list[ContainerService] | None = Field(default=None, max_length=20)
    manifests: Text | None = Field(default=None, max_length=200_000)
    quota: QuotaSpec | None = None
    egress: EgressAllowlist | None = None
    backing: list[ServiceDeclaration] | None = Field(
        default=None, max_length=MAX_SERVICES, description=BACKING
    )
    sleep_after_minutes: int | None = Field(
        default=None, strict=True, ge=0, le=MAX_SLEEP_AFTER_MINUTES, description=SLEEP
    )
    ttl_hours: int | None = Field(default=None, strict=True, ge=0, le=MAX_TTL_HOURS, description=TTL)
    confirm: Text | None = Field(
        default=None,
        max_length=100,
        description="The project's name: removing a database a deployment environment holds takes it.",
    )


# Fields a null clears; for the others null means "leave as it is".
_CLEARABLE = frozenset({"repo_url", "default_ref", "manifests", "devcontainer"})


@router.get(
    "/projects",
    response_model=CursorPage[ProjectRowModel],  # type: ignore[valid-type]
    responses=answers(),
    summary="List the projects you can see",
)
def list_projects(
    actor: Caller,
    cursor: Cursor = None,
    limit: Limit = 20,
    search: Annotated[
        str, Query(max_length=200, pattern=NO_NUL, description="Part of the project's name.")
    ] = "",
) -> dict[str, Any]:
    with read_only() as session:
        page = listing.project_page(session=session, actor=actor, cursor=cursor, limit=limit, search=search)
    return {"items": page.items, "next_cursor": page.next_cursor}


@router.post(
    "/projects",
    status_code=201,
    response_model=ProjectModel,
    responses=answers(404, 409),
    summary="Create a project in a team",
)
def create_project(body: ProjectIn, actor: Caller) -> ProjectHeader:
    with unit_of_work() as session:
        project = projects.create_project(
            session=session,
            actor=actor,
            team_id=body.team_id,
            name=body.name,
            description=body.description,
            repo_url=body.repo_url,
            default_ref=body.default_ref,
            command=body.command,
            env=body.env,
            health_path=body.health_path,
            devcontainer=body.devcontainer,
            url_access=body.url_access,
            workloads=body.workloads.model_dump(mode="json", exclude_none=True) if body.workloads else None,
            backing=[service.model_dump(mode="json") for service in body.backing or []],
            sleep_after_minutes=body.sleep_after_minutes,
            ttl_hours=body.ttl_hours,
        )
        return project_views.project_summary(session=session, actor=actor, project_id=project.id or 0)


@router.get(
    "/projects/{project_id}", response_model=ProjectModel, responses=answers(404), summary="Get a project"
)
def get_project(project_id: Id, actor: Caller) -> ProjectHeader:
    with read_only() as session:
        return project_views.project_summary(session=session, actor=actor, project_id=project_id)


@router.patch(
    "/projects/{project_id}",
    response_model=ProjectModel,
    responses=answers(404),
    summary="Change a project's defaults",
)
def update_project(project_id: Id, body: ProjectChanges, actor: Caller) -> ProjectHeader:
    with unit_of_work() as session:
        changes = {
            key: value
            for key, value in body.model_dump(mode="json", exclude_unset=True, exclude={"confirm"}).items()
            if value is not None or key in _CLEARABLE
        }
        projects.update_project(
            session=session, actor=actor, project_id=project_id, changes=changes, confirm=body.confirm
        )
        return project_views.project_summary(session=session, actor=actor, project_id=project_id)


@router.delete(
    "/projects/{project_id}",
    status_code=204,
    response_class=Response,
    responses=answers(404, 409),
    summary="Delete a project without live environments",
)
def delete_project(project_id: Id, actor: Caller) -> Response:
    with unit_of_work() as session:
        projects.delete_project(session=session, actor=actor, project_id=project_id)
    return Response(status_code=204)
