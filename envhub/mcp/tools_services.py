"""Tools for an environment's managed services: list them (variable names, never values), rotate a credential.

The same calls as REST's ``api/v1/backing.py``. A project declares its
services with ``update_project`` (``services``).
"""

from __future__ import annotations

from typing import Annotated, TypedDict

from pydantic import Field

from envhub.domain.backing import SERVICE_NAME
from envhub.domain.principals import Principal
from envhub.mcp.schemas import EnvironmentId
from envhub.services import backing, ports
from envhub.services.backing import ManagedServiceRow
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
