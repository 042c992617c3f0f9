"""Managed services a project declares (issue 13): what they are, what workloads are told, when to skip.

A project lists the services its environments need (``postgres``, ``redis``,
``bucket``); envhub provisions one instance of each per environment unless the
environment already runs it itself. This module is the pure part: the
declaration and its validation, the variables a workload receives for an
instance (``DATABASE_URL``, ``PG*``, ``REDIS_URL``, ``S3_*``/``AWS_*``, under
names the project may change), and the detection of services an
environment's own workloads bring.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)

from envhub.domain.specs import EnvironmentSpec
from envhub.errors import ValidationFailed

MAX_SERVICES = 10
SERVICE_NAME = re.compile(r"^[a-z][a-z0-9]{0,19}$")
_VARIABLE = re.compile(r"^[A-Z_][A-Z0-9_]{0,99}$")
# The port a workload uses for each kind, wherever the instance really is.
DEFAULT_PORTS = {"postgres": 5432, "redis": 6379, "bucket": 9000}
POSTGRES_VERSIONS = ("14", "15", "16", "17")
_SIZE = re.compile(r"^[1-9][0-9]{0,4}(Mi|Gi)$")
DEFAULT_BACKUP_HOURS = 24
DEFAULT_KEEP_DAYS = 7
_ENVIRONMENT_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
_POSTGRES_ONLY = ("backup_every_hours", "backup_keep_days", "seed_from")
_ENTRY = re.compile(r"^[a-z][a-z0-9-]{0,39}$")

# What a workload is told, by kind: canonical name -> what it holds.
VARIABLES: dict[str, tuple[str, ...]] = {
    "postgres": ("DATABASE_URL", "PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE"),
    "redis": ("REDIS_URL",),
    "bucket": ("S3_ENDPOINT", "S3_BUCKET", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"),
}
CATALOG = "catalog"  # an entry of the operator's catalog (domain/catalog.py)
SECRET_VARIABLES = frozenset({"DATABASE_URL", "PGPASSWORD", "REDIS_URL", "AWS_SECRET_ACCESS_KEY"})

# What a Redis tenant may not run, wherever its server is (a redis-server envhub runs,
# or a workload in the environment's namespace). It keeps everything that touches only
# its data; it loses what reaches beyond the data or the environment: CONFIG (``CONFIG
# SET dir`` then ``SAVE`` writes a file elsewhere), DEBUG, MODULE (loads code), ACL
# (would lift these limits), replication and MIGRATE (the server would connect where
# the tenant says), RESTORE (crafted payloads), MONITOR, SHUTDOWN, FAILOVER, CLUSTER.
REDIS_DENIED_COMMANDS = (
    "config",
    "debug",
    "module",
    "acl",
    "monitor",
    "shutdown",
    "slaveof",
    "replicaof",
    "sync",
    "psync",
    "replconf",
    "migrate",
    "restore",
    "restore-asking",
    "failover",
    "cluster",
)


# Each managed Redis holds at most this much, and refuses writes past it (it evicts nothing: a
# cache wants eviction, a queue must not lose jobs, and only the project knows which it is).
REDIS_MAX_MEMORY = "256mb"
REDIS_EVICTION = "noeviction"


def redis_tenant_rules() -> list[str]:
    """The ACL rules of a Redis tenant's user, after its password: every key and channel, every
    command but :data:`REDIS_DENIED_COMMANDS`."""
    return ["on", "~*", "&*", "+@all", *(f"-{command}" for command in REDIS_DENIED_COMMANDS)]


def redis_password_digest(password: str) -> str:
    """The SHA-256 digest Redis's ACL takes instead of a password (``#<digest>``): a server's
    configuration never holds the password itself."""
    return hashlib.sha256(password.encode()).hexdigest()


class ServiceDeclaration(BaseModel):
    """One service every environment of the project gets."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    kind: str
    # PostgreSQL's major version; "" takes the backend's.
    version: str = ""
    # Storage the instance may use ("1Gi"); "" takes the backend's default.
    size: str = ""
    # Redis: keep data across restarts (append-only file).
    persistent: StrictBool = True
    # Put before every variable name ("ANALYTICS_" gives ANALYTICS_DATABASE_URL).
    prefix: str = ""
    # Canonical variable name -> the name the workload expects instead.
    rename: dict[str, str] = Field(default_factory=dict)
    # PostgreSQL: how often a deployment environment's database is backed up, and how long a
    # backup is kept (the last one of a removed database too).
    backup_every_hours: int = Field(default=DEFAULT_BACKUP_HOURS, ge=1, le=24 * 30)
    backup_keep_days: int = Field(default=DEFAULT_KEEP_DAYS, ge=1, le=3650)
    # PostgreSQL: a new development environment starts from a copy of this deployment
    # environment's latest backup ("staging"); "" starts empty.
    seed_from: str = ""
    # kind "catalog": the operator's catalog entry (``rabbitmq``) and the values of its parameters.
    entry: str = ""
    parameters: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not SERVICE_NAME.fullmatch(value):
            raise ValueError("must be 1-20 lower-case letters and digits, starting with a letter")
        return value

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        if value not in VARIABLES and value != CATALOG:
            raise ValueError(f"must be one of {', '.join([*VARIABLES, CATALOG])}")
        return value

    @field_validator("entry")
    @classmethod
    def _entry(cls, value: str) -> str:
        if value and not _ENTRY.fullmatch(value):
            raise ValueError("must name a catalog entry: lower-case letters, digits and -")
        return value

    @field_validator("size")
    @classmethod
    def _size(cls, value: str) -> str:
        if value and not _SIZE.fullmatch(value):
            raise ValueError("must be a size in Mi or Gi, such as 512Mi or 10Gi")
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if value and not re.fullmatch(r"[A-Z][A-Z0-9_]{0,29}_", value):
            raise ValueError("must be upper-case letters, digits and _, ending with _ (such as ANALYTICS_)")
        return value

    @model_validator(mode="after")
    def _fits_kind(self) -> ServiceDeclaration:
        if self.version and (self.kind != "postgres" or self.version not in POSTGRES_VERSIONS):
            raise ValueError(
                f"version applies to postgres only, one of {', '.join(POSTGRES_VERSIONS)}"
                if self.kind == "postgres"
                else f"a {self.kind} service has no version"
            )
        if (self.kind == CATALOG) != bool(self.entry):
            raise ValueError(
                "a catalog service names its entry (entry: rabbitmq)"
                if self.kind == CATALOG
                else "entry applies to kind catalog only"
            )
        if self.parameters and self.kind != CATALOG:
            raise ValueError("parameters apply to kind catalog only")
        given = [option for option in _POSTGRES_ONLY if option in self.model_fields_set]
        if given and self.kind != "postgres":
            raise ValueError(f"{', '.join(given)} applies to postgres only")
        if self.seed_from and not _ENVIRONMENT_NAME.fullmatch(self.seed_from):
            raise ValueError("seed_from must name an environment of the project, such as staging")
        for canonical, name in self.rename.items():
            if self.kind != CATALOG and canonical not in VARIABLES[self.kind]:
                raise ValueError(f"rename: {canonical} is not a variable of {self.kind}")
            if not _VARIABLE.fullmatch(name):
                raise ValueError(f"rename: {name!r} is not an upper-case variable name")
        return self

    @property
    def label(self) -> str:
        """What it is, for people: "PostgreSQL 16", "Redis (persistent)", "S3 bucket"."""
        if self.kind == "postgres":
            return f"PostgreSQL {self.version}" if self.version else "PostgreSQL"
        if self.kind == "redis":
            return f"Redis ({'persistent' if self.persistent else 'in memory'})"
        if self.kind == CATALOG:
            return f"{self.entry} (catalog)"
        return "S3 bucket"

    def variable_names(self, catalog_variables: Iterable[str] = ()) -> dict[str, str]:
        """Canonical name -> the name this project's workloads receive it under.

        A catalog service's canonical names are its entry's (``catalog_variables``):
        without them it names none here, and the service layer checks them with the catalog.
        """
        canonical_names = catalog_variables if self.kind == CATALOG else VARIABLES[self.kind]
        return {
            canonical: self.rename.get(canonical, f"{self.prefix}{canonical}")
            for canonical in canonical_names
        }


class BackingSettings(BaseModel):
    """A project's managed services, in the order declared."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    services: tuple[ServiceDeclaration, ...] = ()

    @model_validator(mode="after")
    def _distinct(self) -> BackingSettings:
        if len(self.services) > MAX_SERVICES:
            raise ValueError(f"at most {MAX_SERVICES} services")
        names = [service.name for service in self.services]
        if len(set(names)) != len(names):
            raise ValueError("service names must be unique")
        seen: dict[str, str] = {}
        for service in self.services:
            for variable in service.variable_names().values():
                if variable in seen:
                    raise ValueError(
                        f"{service.name} and {seen[variable]} would both set {variable}: "
                        f"give one a prefix (such as {service.name.upper()}_) or rename it"
                    )
                seen[variable] = service.name
        return self

    def names(self) -> tuple[str, ...]:
        return tuple(service.name for service in self.services)

    def service(self, name: str) -> ServiceDeclaration | None:
        """The declaration of service ``name``; None when there is none."""
        return next((service for service in self.services if service.name == name), None)


def parse_backing(raw: Mapping[str, Any] | Iterable[Any] | None) -> BackingSettings:
    """Validate a project's services (a list, or ``{"services": [...]}``), raising ``ValidationFailed``."""
    data: Any = raw or []
    if not isinstance(data, Mapping):
        data = {"services": list(data)}
    try:
        return BackingSettings.model_validate(data)
    except ValidationError as exc:
        problems = {
            ".".join(str(part) for part in error["loc"]) or "services": str(error["msg"]).removeprefix(
                "Value error, "
            )
            for error in exc.errors()
        }
    message = "invalid services: " + "; ".join(f"{where}: {what}" for where, what in problems.items())
    raise ValidationFailed(message, details=problems)


def check_variable_clash(settings: BackingSettings, reserved: Iterable[str]) -> None:
    """Refuse services whose variables a project already sets itself (its env, its secrets)."""
    taken = set(reserved)
    for service in settings.services:
        clash = sorted(taken & set(service.variable_names().values()))
        if clash:
            raise ValidationFailed(
                f"service {service.name} would set {', '.join(clash)}, which the project already sets",
                hint="Remove the project's own variable, or give the service a prefix or a rename.",
                details={"service": service.name, "variables": ",".join(clash)},
            )


@dataclass(frozen=True, slots=True)
class Connection:
    """How a workload reaches one instance (the pure mirror of the backing port's ``Access``)."""

    kind: str
    host: str
    port: int
    username: str
    password: str
    database: str = ""
    endpoint_url: str = ""
    region: str = ""

    def __repr__(self) -> str:  # the password is never printed
        return f"Connection({self.kind}, {self.host}:{self.port}, {self.username}, {self.database})"


def variables_for(declaration: ServiceDeclaration, connection: Connection) -> dict[str, str]:
    """The variables a workload receives for its instance of ``declaration``, under the project's names."""
    user, password = quote(connection.username, safe=""), quote(connection.password, safe="")
    address = f"{connection.host}:{connection.port}"
    values: dict[str, str]
    if declaration.kind == "postgres":
        values = {
            "DATABASE_URL": f"postgresql://{user}:{password}@{address}/{quote(connection.database, safe='')}",
            "PGHOST": connection.host,
            "PGPORT": str(connection.port),
            "PGUSER": connection.username,
            "PGPASSWORD": connection.password,
            "PGDATABASE": connection.database,
        }
    elif declaration.kind == "redis":
        values = {"REDIS_URL": f"redis://{user}:{password}@{address}/0"}
    else:
        values = {
            "S3_ENDPOINT": connection.endpoint_url or f"http://{address}",
            "S3_BUCKET": connection.database,
            "AWS_ACCESS_KEY_ID": connection.username,
            "AWS_SECRET_ACCESS_KEY": connection.password,
            "AWS_REGION": connection.region or "us-east-1",
        }
    names = declaration.variable_names()
    return {names[canonical]: value for canonical, value in values.items()}


# -- services an environment brings itself -----------------------------------

_IMAGES = {
    "postgres": re.compile(
        r"(^|/)(postgres|postgresql|postgis|timescaledb[\w-]*|cloudnative-pg/postgresql)(:|@|$)"
    ),
    "redis": re.compile(r"(^|/)(redis|redis-stack[\w-]*|valkey|keydb)(:|@|$)"),
    "bucket": re.compile(r"(^|/)(minio|s3rver|localstack|seaweedfs|garage)(:|@|$)"),
}
_KINDS = {"postgres": ("postgresql.cnpg.io", "Cluster"), "redis": ("", ""), "bucket": ("", "")}
_URL_VARIABLES = {
    "postgres": ("DATABASE_URL", "POSTGRES_URL", "PGHOST"),
    "redis": ("REDIS_URL",),
    "bucket": ("S3_ENDPOINT", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"),
}


def _image_kind(image: str) -> str | None:
    name = image.lower()
    return next((kind for kind, pattern in _IMAGES.items() if pattern.search(name)), None)


def _containers(obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    spec = obj.get("spec") or {}
    if obj.get("kind") == "CronJob":
        spec = ((spec.get("jobTemplate") or {}).get("spec")) or {}
    pod = (spec.get("template") or {}).get("spec") or (spec if obj.get("kind") == "Pod" else {})
    found = [c for c in (pod.get("containers") or []) if isinstance(c, Mapping)]
    return found + [c for c in (pod.get("initContainers") or []) if isinstance(c, Mapping)]


def brought_by_workloads(
    *,
    spec: EnvironmentSpec,
    objects: Iterable[Mapping[str, Any]] = (),
    project_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Kinds the environment runs or points at itself, each with why (said on the environment's page).

    Looks at the images of its services and rendered objects (a PostgreSQL or
    Redis image), CloudNativePG ``Cluster`` objects, and variables that already
    say where a service is (``DATABASE_URL``, ``REDIS_URL``, an S3 endpoint).
    """
    found: dict[str, str] = {}

    def note(kind: str | None, why: str) -> None:
        if kind is not None and kind not in found:
            found[kind] = why

    def variables(env: Mapping[str, str], where: str) -> None:
        for kind, names in _URL_VARIABLES.items():
            named = next((name for name in names if name in env), None)
            if named is not None:
                note(kind, f"{where} sets {named}")

    variables(project_env or {}, "the project")
    variables(spec.env, "the environment")
    for service in spec.services:
        note(_image_kind(service.image), f"service {service.name} runs {service.image}")
        variables(service.env, f"service {service.name}")
    for obj in objects:
        label = f"{obj.get('kind', 'object')} {(obj.get('metadata') or {}).get('name', '')}".strip()
        group = str(obj.get("apiVersion", "")).split("/")[0]
        for kind, (api_group, object_kind) in _KINDS.items():
            if api_group and group == api_group and obj.get("kind") == object_kind:
                note(kind, f"{label} is a CloudNativePG cluster")
        for container in _containers(obj):
            image = str(container.get("image", ""))
            note(_image_kind(image), f"{label} runs {image}")
            env = {
                str(item.get("name")): str(item.get("value", ""))
                for item in container.get("env") or []
                if isinstance(item, Mapping) and item.get("name")
            }
            variables(env, label)
    return found
