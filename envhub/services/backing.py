"""Use cases of managed services: what an environment was given, and rotating its credentials.

A project declares its services through ``projects.update_project``
(``backing``); the environment job makes the instances
(``services/provisioning.py``). Here people and agents see, per environment,
each declared service with its state, backend and the names of the variables
its workloads receive (never their values), and rotate a service's
credential: a new one is generated at once and the environment redeploys so
its workloads get it. No credential ever reaches an audit record.

The operator's catalog of other services is read here too (``catalog_entries``),
so a face offers its entries without reading the operator's file itself.
"""

from __future__ import annotations

from typing import TypedDict

from sqlmodel import Session, select

from envhub.config import get_settings
from envhub.domain import humanize as fmt
from envhub.domain.backing import CATALOG, ServiceDeclaration
from envhub.domain.catalog import Catalog
from envhub.domain.phases import is_redeployable
from envhub.domain.policy import Action
from envhub.domain.principals import Principal
from envhub.errors import ConfigurationError, InvalidTransition, NotFound
from envhub.integrations.backing.catalog import load_catalog
from envhub.models import InstanceState, Project, ServiceInstance
from envhub.models.base import utcnow
from envhub.queue.base import JobQueue
from envhub.services import jobruns
from envhub.services.access import authorize_environment
from envhub.services.common import AuditTarget, audited
from envhub.services.environments import get_environment, start_redeploy
from envhub.services.provisioning import declared

_STATE_LABELS = {
    "pending": "Made at the next deploy",
    InstanceState.provisioning.value: "Provisioning",
    InstanceState.ready.value: "Ready",
    InstanceState.skipped.value: "Brought by the environment",
    InstanceState.failed.value: "Failed",
}


class ManagedServiceRow(TypedDict):
    name: str
    kind: str  # postgres | redis | bucket
    kind_label: str  # "PostgreSQL 16", "Redis (persistent)", "S3 bucket"
    state: str  # pending | provisioning | ready | skipped | failed
    state_label: str
    backend: str  # embedded | server | s3; "" before the first deploy
    variables: list[str]  # the names the workloads receive (values are never shown)
    reason: str  # why skipped, or what failed
    error_code: str
    credential_set: str  # "3 minutes ago", "" before there is one
    rotatable: bool


def environment_services(
    *, session: Session, actor: Principal, environment_id: int
) -> list[ManagedServiceRow]:
    """Each service the environment's project declares, as this environment has it."""
    environment = get_environment(session=session, actor=actor, environment_id=environment_id)
    project = authorize_environment(session, actor, environment, Action.environment_read, what="environment")
    rows = {
        row.service: row
        for row in session.exec(
            select(ServiceInstance).where(ServiceInstance.environment_id == environment_id)
        )
        if row.state is not InstanceState.removed
    }
    found: list[ManagedServiceRow] = []
    for declaration in declared(project).services:
        row = rows.get(declaration.name)
        state = row.state.value if row is not None else "pending"
        found.append(
            ManagedServiceRow(
                name=declaration.name,
                kind=declaration.kind,
                kind_label=declaration.label,
                state=state,
                state_label=_STATE_LABELS.get(state, state),
                backend=row.backend if row is not None else "",
                variables=sorted(declaration.variable_names(_entry_variables(declaration)).values()),
                reason=row.reason if row is not None else "",
                error_code=(row.error_code or "") if row is not None else "",
                credential_set=fmt.ago(row.credential_set_at) if row and row.credential_set_at else "",
                rotatable=row is not None and row.state is InstanceState.ready and bool(row.credential),
            )
        )
    return found


def _entry_variables(declaration: ServiceDeclaration) -> list[str]:
    """A catalog service's canonical variable names, from the operator's catalog (none for other kinds)."""
    if declaration.kind != CATALOG:
        return []
    try:
        catalog = operator_catalog()
    except ConfigurationError:
        return []
    entry = catalog.get(declaration.entry) if catalog is not None else None
    return list(entry.variables) if entry else []


class CatalogParameterView(TypedDict):
    name: str
    description: str  # what it is, for people: shown as the field's help
    default: str  # what an instance gets when the project sets nothing
    pattern: str  # the regular expression a value must match (checked when a project is changed)


class CatalogEntryView(TypedDict):
    """One service of the operator's catalog, as a project may declare it (``kind: catalog``)."""

    name: str  # what a declaration names (``entry: rabbitmq``)
    title: str  # for people: "RabbitMQ"
    description: str
    parameters: list[CatalogParameterView]
    variables: list[str]  # the names its instances give workloads (before a prefix or rename)


def operator_catalog() -> Catalog | None:
    """The operator's catalog (``ENVHUB_SERVICES_CATALOG``), or ``None`` when this envhub has none.

    Read again when the file changes; an unreadable or invalid file raises ``ConfigurationError``.
    """
    path = get_settings().services_catalog
    return None if path is None else load_catalog(path)


def catalog_entries(*, actor: Principal) -> list[CatalogEntryView]:
    """What the operator's catalog offers, in its order; empty when this envhub has no catalog.

    Any principal may read it (being signed in is enough): it is the operator's
    offer, the same for every team and project, and holds no secret (templates
    and the chart stay here; only names, descriptions, defaults and patterns leave).
    """
    del actor  # the caller is signed in; nothing here depends on who
    catalog = operator_catalog()
    if catalog is None:
        return []
    return [
        CatalogEntryView(
            name=entry.name,
            title=entry.label,
            description=entry.description,
            parameters=[
                CatalogParameterView(
                    name=parameter.name,
                    description=parameter.description,
                    default=parameter.default,
                    pattern=parameter.pattern,
                )
                for parameter in entry.parameters
            ],
            variables=list(entry.variables),
        )
        for entry in catalog.entries
    ]


def rotate_service_credentials(
    *, session: Session, actor: Principal, queue: JobQueue, environment_id: int, service: str
) -> list[ManagedServiceRow]:
    """Replace a service's credential and redeploy: the workloads get the new one, the old stops working.

    The new password (or key pair) is made by the redeploy's job, never shown
    to anyone; the audit record names the service only.
    """
    target = AuditTarget("environment", id=environment_id, details={"service": service})
    with audited(session, actor, "service.rotate", target):
        environment = get_environment(session=session, actor=actor, environment_id=environment_id)
        project = session.get(Project, environment.project_id)
        assert project is not None
        target.name, target.team_id = f"{project.name}/{environment.name}", project.team_id
        authorize_environment(session, actor, environment, Action.environment_redeploy, what="environment")
        row = session.exec(
            select(ServiceInstance).where(
                ServiceInstance.environment_id == environment_id, ServiceInstance.service == service
            )
        ).first()
        if row is None or row.state in (InstanceState.removed, InstanceState.skipped) or not row.credential:
            raise NotFound(
                f"environment {environment.name} has no credential for a service named {service!r}",
                hint="List the environment's services to see their names; a service is given its first "
                "credential when the environment deploys.",
            )
        if environment.desired_state != "present" or not is_redeployable(environment.phase):
            raise InvalidTransition(
                f"cannot rotate credentials while the environment is {environment.phase.value}",
                details={"phase": environment.phase.value},
            )
        # The job sees no credential and makes a new one; the backend's ensure replaces the old.
        row.credential, row.credential_set_at, row.updated_at = "", None, utcnow()
        session.add(row)
        run = start_redeploy(session, environment)
        target.details["job_run"] = run.id
    jobruns.dispatch(session, queue, run)
    jobruns.announce(environment_id=environment_id, project_id=environment.project_id)
    return environment_services(session=session, actor=actor, environment_id=environment_id)
