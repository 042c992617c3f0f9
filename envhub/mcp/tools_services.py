"""Tools for an environment's managed services: list them (variable names, never values), rotate a
credential, back a database up and restore it.

The same calls as REST's ``api/v1/backing.py``. A project declares its
services with ``update_project`` (``services``).
"""

from __future__ import annotations

from typing import Annotated, TypedDict

from pydantic import Field

from envhub.domain.backing import SERVICE_NAME
from envhub.domain.principals import Principal
from envhub.mcp.schemas import EnvironmentId
from envhub.services import backing, backups, ports
from envhub.services.backing import CatalogEntryView, ManagedServiceRow
from envhub.services.backups import BackupRow, BackupsView, RestoreRow
from envhub.services.units import read_only, unit_of_work

ServiceName = Annotated[
    str, Field(pattern=SERVICE_NAME.pattern, description="The service's name in the project.")
]


class ServiceList(TypedDict):
    services: list[ManagedServiceRow]


def list_services(actor: Principal, environment_id: EnvironmentId) -> ServiceList:
    """The environment's managed services: state, backend, and the variables its workloads receive."""
    with read_only() as session:
        return ServiceList(
            services=backing.environment_services(session=session, actor=actor, environment_id=environment_id)
        )


def rotate_service_credentials(
    actor: Principal,
    environment_id: EnvironmentId,
    service: Annotated[
        str, Field(pattern=SERVICE_NAME.pattern, description="The service's name in the project.")
    ],
) -> ServiceList:
    """Replace a service's credential; the environment redeploys so its workloads get the new one."""
    with unit_of_work() as session:
        return ServiceList(
            services=backing.rotate_service_credentials(
                session=session,
                actor=actor,
                queue=ports.queue(),
                environment_id=environment_id,
                service=service,
            )
        )


def list_backups(
    actor: Principal,
    environment_id: EnvironmentId,
    service: Annotated[
        str | None, Field(pattern=SERVICE_NAME.pattern, description="Only this database.")
    ] = None,
    before: Annotated[
        int | None, Field(ge=1, description="Backups older than this id (next_before).")
    ] = None,
) -> BackupsView:
    """The environment's database backups, newest first (size, duration, SHA-256, restore check),
    when the last one succeeded and any warning, and recent restores."""
    with read_only() as session:
        return backups.environment_backups(
            session=session, actor=actor, environment_id=environment_id, service=service, before=before
        )


def create_backup(actor: Principal, environment_id: EnvironmentId, service: ServiceName) -> BackupRow:
    """Back a managed PostgreSQL database up now; a job takes it (list_backups shows when it is done)."""
    with unit_of_work() as session:
        return backups.request_backup(
            session=session, actor=actor, queue=ports.queue(), environment_id=environment_id, service=service
        )


def restore_backup(
    actor: Principal,
    backup_id: Annotated[int, Field(ge=1, le=2**31 - 1, description="The backup to restore.")],
    environment_id: Annotated[
        int | None,
        Field(ge=1, le=2**31 - 1, description="Into this environment of the project (default: its own)."),
    ] = None,
    service: Annotated[
        str | None, Field(pattern=SERVICE_NAME.pattern, description="Into this database (default: the same).")
    ] = None,
    confirm: Annotated[
        str | None,
        Field(max_length=63, description="A deployment environment's name: replacing its database takes it."),
    ] = None,
    new_environment: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=63,
            description="A new development environment of this name, its database started as the backup.",
        ),
    ] = None,
) -> RestoreRow:
    """Replace a database with a backup. What it held is backed up first; a job restores."""
    with unit_of_work() as session:
        return backups.restore_backup(
            session=session,
            actor=actor,
            queue=ports.queue(),
            backup_id=backup_id,
            environment_id=environment_id,
            service=service,
            confirm=confirm,
            new_environment=new_environment,
        )


class CatalogList(TypedDict):
    entries: list[CatalogEntryView]


def list_catalog(actor: Principal) -> CatalogList:
    """The operator's catalog of other services (RabbitMQ and the like): each entry's parameters
    and the variables it gives. Declare one with update_project(services=[{"name": "mq",
    "kind": "catalog", "entry": "rabbitmq", "parameters": {...}}])."""
    return CatalogList(entries=backing.catalog_entries(actor=actor))
