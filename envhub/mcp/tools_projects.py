"""Tools for projects and their secrets (write-only: names and dates come back, never values)."""

from __future__ import annotations

from typing import Annotated, Any, TypedDict

from pydantic import Field

from envhub.domain.backing import MAX_SERVICES, ServiceDeclaration
from envhub.domain.idleness import MAX_SLEEP_AFTER_MINUTES, MAX_TTL_HOURS
from envhub.domain.principals import Principal
from envhub.domain.url_access import UrlAccessName
from envhub.mcp.schemas import Limit, Offset, ProjectId, TeamId
from envhub.services import identity_views, project_views, projects, secrets
from envhub.services.identity_views import SecretRow
from envhub.services.project_views import ProjectHeader, ProjectOverview
from envhub.services.units import read_only, unit_of_work

UrlAccessArg = Annotated[
    UrlAccessName | None,
    Field(
        description="Who may open the URLs of the project's environments: 'public' = anyone with "
        "the link (the default); 'sign_in' = only people signed in to envhub who may see the "
        "environment (a client without an envhub browser session is sent to envhub's sign-in "
        "instead of the app: check such environments with run_command and get_logs)."
    ),
]
SecretId = Annotated[int, Field(ge=1, le=2**31 - 1, description="From list_secrets.")]


class Deleted(TypedDict):
    id: int
    deleted: bool


class SecretList(TypedDict):
    secrets: list[SecretRow]


def get_project(
    actor: Principal, project_id: ProjectId, offset: Offset = 0, limit: Limit = 20
) -> ProjectOverview:
    """A project's defaults (repo, ref, command, health path, who may open its URLs), its container
    services and its environments."""
    with read_only() as session:
        return project_views.project_overview(
            session=session, actor=actor, project_id=project_id, offset=offset, limit=limit
        )


def create_project(
    actor: Principal,
    team_id: TeamId,
    name: Annotated[str, Field(min_length=1, max_length=63, description="DNS-safe name.")],
    description: Annotated[str, Field(max_length=500)] = "",
    repo_url: Annotated[
        str | None, Field(max_length=500, description="Git repository its environments run.")
    ] = None,
    ref: Annotated[str | None, Field(max_length=255, description="Default git ref.")] = None,
    command: Annotated[
        str | None, Field(max_length=4000, description="Command serving HTTP on $PORT.")
    ] = None,
    health_path: Annotated[str | None, Field(max_length=200)] = None,
    devcontainer: Annotated[
        str | None,
        Field(
            max_length=100,
            description="A named dev container configuration (.devcontainer/<name>/devcontainer.json); "
            "unset: .devcontainer/devcontainer.json or .devcontainer.json.",
        ),
    ] = None,
    url_access: UrlAccessArg = None,
) -> ProjectHeader:
    """Create a project in a team (needs the team's admin role and the write scope)."""
    with unit_of_work() as session:
        created = projects.create_project(
            session=session,
            actor=actor,
            team_id=team_id,
            name=name,
            description=description,
            repo_url=repo_url,
            default_ref=ref,
            command=command,
            health_path=health_path,
            devcontainer=devcontainer,
            url_access=url_access,
        )
        return project_views.project_summary(session=session, actor=actor, project_id=created.id or 0)


def update_project(
    actor: Principal,
    project_id: ProjectId,
    description: Annotated[str | None, Field(max_length=500)] = None,
    repo_url: Annotated[str | None, Field(max_length=500)] = None,
    ref: Annotated[str | None, Field(max_length=255)] = None,
    command: Annotated[str | None, Field(max_length=4000)] = None,
    health_path: Annotated[str | None, Field(max_length=200)] = None,
    devcontainer: Annotated[
        str | None,
        Field(
            max_length=100,
            description="A named dev container configuration (.devcontainer/<name>/devcontainer.json); "
            "unset: .devcontainer/devcontainer.json or .devcontainer.json.",
        ),
    ] = None,
    url_access: UrlAccessArg = None,
    services: Annotated[
        list[ServiceDeclaration] | None,
        Field(
            max_length=MAX_SERVICES,
            description="Managed services every environment gets (PostgreSQL, Redis, an S3 bucket); "
            "replaces the project's list, [] removes all. Workloads receive DATABASE_URL, REDIS_URL, S3_*.",
        ),
    ] = None,
    sleep_after_minutes: Annotated[
        int | None,
        Field(
            ge=0,
            le=MAX_SLEEP_AFTER_MINUTES,
            description="Development environments sleep after this many idle minutes (processes stop, "
            "the workspace stays, a visit wakes them); 0 turns it off.",
        ),
    ] = None,
    ttl_hours: Annotated[
        int | None,
        Field(
            ge=0,
            le=MAX_TTL_HOURS,
            description="Development environments (not a pull request's) are deleted after this many "
            "idle hours; 0 turns it off. Pinned ones neither sleep nor expire.",
        ),
    ] = None,
    confirm: Annotated[
        str | None,
        Field(
            max_length=100,
            description="The project's name: removing a database a deployment environment holds takes it.",
        ),
    ] = None,
) -> ProjectHeader:
    """Change a project's defaults (fields left out stay); new environments and redeploys use them."""
    given: dict[str, Any] = {
        "description": description,
        "repo_url": repo_url,
        "default_ref": ref,
        "command": command,
        "health_path": health_path,
        "devcontainer": devcontainer,
        "url_access": url_access,
        "backing": None if services is None else [item.model_dump(mode="json") for item in services],
        "sleep_after_minutes": sleep_after_minutes,
        "ttl_hours": ttl_hours,
    }
    with unit_of_work() as session:
        projects.update_project(
            session=session,
            actor=actor,
            project_id=project_id,
            changes={key: value for key, value in given.items() if value is not None},
            confirm=confirm,
        )
        return project_views.project_summary(session=session, actor=actor, project_id=project_id)


def delete_project(actor: Principal, project_id: ProjectId) -> Deleted:
    """Delete a project that has no live environments left (needs the admin scope)."""
    with unit_of_work() as session:
        projects.delete_project(session=session, actor=actor, project_id=project_id)
    return Deleted(id=project_id, deleted=True)


def list_secrets(actor: Principal, project_id: ProjectId) -> SecretList:
    """The names of a project's secrets (values are never shown)."""
    with read_only() as session:
        return SecretList(
            secrets=identity_views.secret_rows(session=session, actor=actor, project_id=project_id)
        )


def set_secret(
    actor: Principal,
    project_id: ProjectId,
    name: Annotated[
        str, Field(min_length=1, max_length=100, description="A variable name, e.g. DATABASE_URL.")
    ],
    value: Annotated[str, Field(max_length=65536)],
) -> SecretRow:
    """Set a project secret (an environment variable of its environments from their next deploy)."""
    with unit_of_work() as session:
        return identity_views.secret_row(
            secrets.set_secret(session=session, actor=actor, project_id=project_id, name=name, value=value)
        )


def delete_secret(actor: Principal, secret_id: SecretId) -> Deleted:
    """Delete a project secret."""
    with unit_of_work() as session:
        secrets.delete_secret(session=session, actor=actor, secret_id=secret_id)
    return Deleted(id=secret_id, deleted=True)
