"""``/api/v1`` managed services of an environment: what it was given, rotating a credential, backups.

Thin translations onto ``services/backing.py``. A project's services are
declared on the project itself (``backing`` in ``POST``/``PATCH /projects``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from envhub.api.v1.models import Caller, Id, answers
from envhub.domain.backing import SERVICE_NAME
from envhub.domain.humanize import MAX_ID
from envhub.services import backing, backups, ports
from envhub.services.backing import CatalogEntryView, ManagedServiceRow
from envhub.services.backups import BackupRow, BackupsView, RestoreRow
from envhub.services.units import read_only, unit_of_work

router = APIRouter(prefix="/api/v1", tags=["services"])

ServiceName = Annotated[
    str, Path(pattern=SERVICE_NAME.pattern, description="The service's name in the project.")
]


class ManagedServiceOut(BaseModel):
    name: str
    kind: str
    kind_label: str
    state: str
    state_label: str
    backend: str
    variables: list[str]
    reason: str
    error_code: str
    credential_set: str
    rotatable: bool


@router.get(
    "/environments/{environment_id}/services",
    response_model=list[ManagedServiceOut],
    responses=answers(404),
    summary="The managed services of an environment (variable names, never values)",
)
def list_services(environment_id: Id, actor: Caller) -> list[ManagedServiceRow]:
    with read_only() as session:
        return backing.environment_services(session=session, actor=actor, environment_id=environment_id)


@router.post(
    "/environments/{environment_id}/services/{service}/rotate",
    response_model=list[ManagedServiceOut],
    responses=answers(404, 409),
    summary="Replace a service's credential and redeploy the environment with it",
)
def rotate(environment_id: Id, service: ServiceName, actor: Caller) -> list[ManagedServiceRow]:
    with unit_of_work() as session:
        return backing.rotate_service_credentials(
            session=session, actor=actor, queue=ports.queue(), environment_id=environment_id, service=service
        )


# -- backups of managed PostgreSQL ------------------------------------------------------------------


class BackupOut(BaseModel):
    id: int
    service: str
    state: str
    trigger: str
    trigger_label: str
    method: str = Field(description="pg_dump: envhub's, in the object store; barman: CloudNativePG's")
    requested_by: str
    created_at: str
    created: str
    finished_at: str
    size_bytes: int
    size: str
    seconds: float
    duration: str
    sha256: str
    expires_at: str
    expires: str
    check: str
    check_passed: bool | None
    error: str
    error_code: str
    restorable: bool


class BackupStatusOut(BaseModel):
    service: str
    scheduled: bool
    schedule: str
    last_success: str
    last_success_at: str
    last_size: str
    warning: str


class RestoreOut(BaseModel):
    id: int
    backup_id: int
    environment_id: int
    service: str
    purpose: str
    purpose_label: str
    state: str
    requested_by: str
    created: str
    created_at: str
    seconds: float
    detail: str
    error: str
    error_code: str
    safety_backup_id: int | None


class BackupsOut(BaseModel):
    status: list[BackupStatusOut]
    backups: list[BackupOut]
    restores: list[RestoreOut]
    next_before: int | None


class RestoreIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    environment_id: int | None = Field(
        default=None,
        ge=1,
        le=MAX_ID,
        description="Restore into this environment of the project (default: its own).",
    )
    service: str | None = Field(
        default=None,
        pattern=SERVICE_NAME.pattern,
        description="Into this PostgreSQL service (default: the same).",
    )
    confirm: str | None = Field(
        default=None,
        max_length=63,
        description="A deployment environment's name: replacing its database takes it.",
    )
    new_environment: str | None = Field(
        default=None,
        min_length=1,
        max_length=63,
        description="Make a new development environment of this name whose database starts as the backup.",
    )


@router.get(
    "/environments/{environment_id}/backups",
    response_model=BackupsOut,
    responses=answers(404),
    summary="An environment's database backups (newest first), their status and recent restores",
)
def list_backups(
    environment_id: Id,
    actor: Caller,
    service: Annotated[str | None, Query(pattern=SERVICE_NAME.pattern)] = None,
    before: Annotated[int | None, Query(ge=1, le=MAX_ID, description="Backups older than this id")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = backups.PAGE,
) -> BackupsView:
    with read_only() as session:
        return backups.environment_backups(
            session=session,
            actor=actor,
            environment_id=environment_id,
            service=service,
            before=before,
            limit=limit,
        )


@router.post(
    "/environments/{environment_id}/services/{service}/backups",
    status_code=202,
    response_model=BackupOut,
    responses=answers(404, 409),
    summary="Back a managed PostgreSQL database up now (a job takes it)",
)
def create_backup(environment_id: Id, service: ServiceName, actor: Caller) -> BackupRow:
    with unit_of_work() as session:
        return backups.request_backup(
            session=session, actor=actor, queue=ports.queue(), environment_id=environment_id, service=service
        )


@router.post(
    "/backups/{backup_id}/restore",
    status_code=202,
    response_model=RestoreOut,
    responses=answers(404, 409, 422),
    summary="Replace a database with a backup (what it held is backed up first; a job restores)",
)
def restore(backup_id: Id, body: RestoreIn, actor: Caller) -> RestoreRow:
    with unit_of_work() as session:
        return backups.restore_backup(
            session=session,
            actor=actor,
            queue=ports.queue(),
            backup_id=backup_id,
            environment_id=body.environment_id,
            service=body.service,
            confirm=body.confirm,
            new_environment=body.new_environment,
        )


class CatalogParameterOut(BaseModel):
    name: str
    description: str
    default: str
    pattern: str


class CatalogEntryOut(BaseModel):
    name: str
    title: str
    description: str
    parameters: list[CatalogParameterOut]
    variables: list[str]


@router.get(
    "/catalog",
    response_model=list[CatalogEntryOut],
    responses=answers(),
    summary="The operator's catalog of other services a project may declare (kind catalog)",
)
def list_catalog(actor: Caller) -> list[CatalogEntryView]:
    return backing.catalog_entries(actor=actor)
