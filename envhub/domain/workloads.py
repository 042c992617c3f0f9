"""Container workloads, quotas and network allowlists of an environment.

Used by runtimes that run images (Kubernetes); the local runtime runs
``EnvironmentSpec.command`` instead. Pure data with validation; rendering into
Kubernetes objects lives in ``domain/kube/``.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    field_validator,
    model_validator,
)

from envhub.domain.variables import check_names, check_values

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# registry/path:tag@digest, conservatively.
_IMAGE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._/:@-]{0,254}$")


def reject_bool(value: object) -> object:
    """A count or a port given as true or false is a mistake, not 1 or 0 (as pydantic would read it)."""
    if isinstance(value, bool):
        raise ValueError("must be a number, not true or false")
    return value


Whole = BeforeValidator(reject_bool)


def _quantity(value: str | None) -> str | None:
    if value is None:
        return None
    value = str(value).strip()
    if not _QUANTITY.match(value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. 500m, 1, 256Mi, 2Gi)")
    return value


class Resources(BaseModel):
    """Requests (what is reserved) and limits (the ceiling) of one container."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cpu: str = "100m"
    memory: str = "128Mi"
    cpu_limit: str | None = "500m"
    memory_limit: str | None = "512Mi"

    _check = field_validator("cpu", "memory", "cpu_limit", "memory_limit")(
        classmethod(lambda cls, v: _quantity(v))
    )


class HealthCheck(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str = "/"
    port: Annotated[int, Whole] | None = None  # default: the service's first port
    initial_delay_seconds: Annotated[int, Whole, Field(ge=0, le=600)] = 0
    period_seconds: Annotated[int, Whole, Field(ge=1, le=300)] = 10

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with '/'")
        return value


class ContainerService(BaseModel):
    """One service of an environment: an image, how to run it, what it listens on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    image: str
    command: tuple[str, ...] | None = None
    args: tuple[str, ...] | None = None
    env: dict[str, str] = Field(default_factory=dict)
    ports: tuple[Annotated[int, Whole, Field(ge=1, le=65535)], ...] = ()
    resources: Resources = Resources()
    health: HealthCheck | None = None
    replicas: Annotated[int, Whole, Field(ge=0, le=20)] = 1
    public: StrictBool = True  # the first public service with a port gets the environment's URL

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if len(value) > 50 or not _LABEL.match(value):
            raise ValueError("must be a lower-case DNS label of at most 50 characters")
        return value

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        if not _IMAGE.match(value):
            raise ValueError(f"{value!r} is not a valid image reference")
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not _ENV_KEY.match(key):
                raise ValueError(f"{key!r} is not a valid environment variable name")
        check_names(value, field="services.env")
        check_values(value, field="services.env")
        return value

    @model_validator(mode="after")
    def _unique_ports(self) -> ContainerService:
        if len(set(self.ports)) != len(self.ports):
            raise ValueError("ports must be unique")
        return self


class QuotaSpec(BaseModel):
    """Totals for the whole environment (ResourceQuota) and per-container defaults (LimitRange)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cpu: str = "2"
    memory: str = "4Gi"
    cpu_limit: str = "4"
    memory_limit: str = "8Gi"
    pods: Annotated[int, Whole, Field(ge=1, le=500)] = 20
    services: Annotated[int, Whole, Field(ge=0, le=100)] = 10
    persistent_volume_claims: Annotated[int, Whole, Field(ge=0, le=50)] = 5
    storage: str = "20Gi"
    default_cpu: str = "100m"
    default_memory: str = "128Mi"
    default_cpu_limit: str = "500m"
    default_memory_limit: str = "512Mi"

    _check = field_validator(
        "cpu", "memory", "cpu_limit", "memory_limit", "storage",
        "default_cpu", "default_memory", "default_cpu_limit", "default_memory_limit",
    )(classmethod(lambda cls, v: _quantity(v)))  # fmt: skip


class EgressAllowlist(BaseModel):
    """Where an environment may connect to, beyond DNS and its own namespace."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cidrs: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()
    # "namespace/service" or "namespace/service:port"
    services: tuple[str, ...] = ()

    @field_validator("cidrs")
    @classmethod
    def _cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError as exc:
                raise ValueError(f"{cidr!r} is not a CIDR block") from exc
        return value

    @field_validator("namespaces")
    @classmethod
    def _namespaces(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for namespace in value:
            if not _LABEL.match(namespace):
                raise ValueError(f"{namespace!r} is not a namespace name")
        return value

    @field_validator("services")
    @classmethod
    def _services(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            match = re.match(r"^([a-z0-9-]+)/([a-z0-9-]+)(:[0-9]{1,5})?$", item)
            if not match:
                raise ValueError(f"{item!r} must look like namespace/service or namespace/service:port")
        return value
