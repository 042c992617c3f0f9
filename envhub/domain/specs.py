"""What an environment should be: the spec stored with it and handed to runtimes.

A spec is plain data (pydantic, frozen) so it can be stored as JSON, compared
across generations and rendered by any runtime without I/O.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from envhub.domain.devcontainer import Workspace, check_name
from envhub.domain.public import PUBLIC_URL_VARIABLE, GatewayAddress, IngressRoute
from envhub.domain.repos import Refusal, refusal, repo_source
from envhub.domain.url_access import UrlAccess
from envhub.domain.variables import check_names, check_values
from envhub.domain.workloads import ContainerService, EgressAllowlist, QuotaSpec
from envhub.errors import DevcontainerInvalid, RepoUrlRefused, ValidationFailed

DEFAULT_COMMAND = "python3 -m http.server $PORT"
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Set by envhub in every process and container of an environment (see EnvironmentTarget.variables).
ENVHUB_VARIABLES = frozenset({"ENVHUB_ENVIRONMENT", "ENVHUB_PROJECT", PUBLIC_URL_VARIABLE})
_RESERVED_ENV = {"PORT", *ENVHUB_VARIABLES}
_REF = re.compile(r"^[A-Za-z0-9._/-]{1,200}$")


class EnvironmentKind(StrEnum):
    development = "development"
    deployment = "deployment"


class Trigger(StrEnum):
    """What made an environment: a person, an agent, a pull request or a branch push."""

    manual = "manual"
    agent = "agent"
    pull_request = "pull_request"
    push = "push"


class EnvironmentSpec(BaseModel):
    """The desired shape of one environment."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    command: Annotated[str, Field(min_length=1, max_length=4000)] = DEFAULT_COMMAND
    env: dict[str, str] = Field(default_factory=dict)
    repo_url: str | None = None
    ref: str | None = None
    health_path: str = "/"
    # Image-based runtimes (Kubernetes): services to run, or raw manifests.
    services: tuple[ContainerService, ...] = ()
    manifests: str | None = None
    quota: QuotaSpec = QuotaSpec()
    egress: EgressAllowlist = EgressAllowlist()
    # A named dev container configuration (``.devcontainer/<name>/devcontainer.json``);
    # None: ``.devcontainer/devcontainer.json`` or ``.devcontainer.json`` when the repository has one.
    devcontainer: str | None = None

    @field_validator("services")
    @classmethod
    def _unique_services(cls, value: tuple[ContainerService, ...]) -> tuple[ContainerService, ...]:
        names = [service.name for service in value]
        if len(set(names)) != len(names):
            raise ValueError("service names must be unique")
        return value

    @field_validator("command")
    @classmethod
    def _command(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("command must not be blank")
        if "\0" in value:
            raise ValueError("command must not contain NUL characters")
        return value.strip()

    @field_validator("env")
    @classmethod
    def _env_keys(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not _ENV_KEY.fullmatch(key):
                raise ValueError(f"{key!r} is not a valid environment variable name")
            if key in _RESERVED_ENV:
                raise ValueError(f"{key} is set by envhub and cannot be overridden")
        # Not a ValueError: it leaves pydantic as itself, with its own code.
        check_names(value, field="env")
        check_values(value, field="env")
        return value

    @field_validator("ref")
    @classmethod
    def _ref(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not _REF.fullmatch(value) or value.startswith("-") or ".." in value:
            raise ValueError(f"{value!r} is not a valid git ref")
        return value

    @field_validator("repo_url")
    @classmethod
    def _repo(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        try:
            return repo_source(value).url
        except RepoUrlRefused as exc:
            raise PydanticCustomError(
                RepoUrlRefused.code, exc.message, {"reason": exc.details["reason"]}
            ) from None

    @field_validator("devcontainer")
    @classmethod
    def _devcontainer(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        try:
            return check_name(value.strip())
        except DevcontainerInvalid as exc:
            raise ValueError(exc.message) from None

    @field_validator("health_path")
    @classmethod
    def _health(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with '/'")
        return value


def parse_spec(data: dict[str, Any]) -> EnvironmentSpec:
    """Validate raw input into a spec, raising :class:`ValidationFailed` with field names."""
    try:
        return EnvironmentSpec.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
    # Raised outside the ``except`` so the pydantic error, which quotes the input
    # (a refused URL may hold a token), is not chained to what gets logged.
    problems = {
        ".".join(str(p) for p in err["loc"]) or "spec": str(err["msg"]).removeprefix("Value error, ")
        for err in errors
    }
    message = "invalid environment spec: " + "; ".join(f"{field}: {msg}" for field, msg in problems.items())
    refused = next((err for err in errors if err["type"] == RepoUrlRefused.code), None)
    if refused is not None:
        reason = refused["ctx"]["reason"]
        hint = refusal(Refusal(reason)).hint
        raise RepoUrlRefused(message, hint=hint, details={**problems, "reason": reason})
    raise ValidationFailed(message, details=problems)


def merge_spec(base: EnvironmentSpec, overrides: dict[str, Any]) -> EnvironmentSpec:
    """Apply the non-empty ``overrides`` on top of a project's defaults."""
    data = base.model_dump()
    for key, value in overrides.items():
        if value is None or value == "":
            continue
        if key == "env":
            data["env"] = {**data["env"], **value}
        else:
            data[key] = value
    return parse_spec(data)


@dataclass(frozen=True, slots=True)
class ServiceSocket:
    """A managed service envhub runs on this machine, as an environment of the local runtime reaches it.

    Inside the environment's own network, ``127.0.0.1:<port>`` is relayed to
    the UNIX socket at ``socket`` on the host (the service's own, in a folder
    only envhub can open). Cluster runtimes ignore it: there, workloads reach
    their services over the cluster's network.
    """

    name: str  # the project's name for the service ("db"), for messages
    port: int  # the TCP port on the environment's 127.0.0.1
    socket: str  # absolute host path of the service's UNIX socket
    # The user the service runs as when it is not envhub's own (PostgreSQL refuses to
    # run as root, so a root envhub runs it as `postgres`): the relay then accepts a
    # socket and folder of that user too, and still of nobody else.
    owner: int | None = None


_SUN_PATH_MAX = 107  # sockaddr_un.sun_path holds 108 bytes with the terminating NUL


def check_service_sockets(sockets: Sequence[ServiceSocket], *, app_port: int | None = None) -> None:
    """Refuse services a local environment cannot be given, naming each problem.

    Each needs a name and a port of its own on the environment's 127.0.0.1,
    never the app's ``$PORT`` (``app_port``, when known), and an absolute,
    normalised UNIX socket path that fits in a socket address. Raises
    :class:`ValidationFailed`; its details map ``services.<name>`` to why.
    """
    problems: dict[str, str] = {}
    owners: dict[int, str] = {}
    for service in sockets:
        key = f"services.{service.name or '?'}"
        why = _service_socket_problem(service, app_port=app_port, owners=owners)
        if why:
            problems.setdefault(key, why)
        owners.setdefault(service.port, service.name)
    if problems:
        listed = "; ".join(f"{key}: {why}" for key, why in problems.items())
        raise ValidationFailed(
            f"these services cannot be relayed into the environment: {listed}", details=problems
        )


def _service_socket_problem(
    service: ServiceSocket, *, app_port: int | None, owners: dict[int, str]
) -> str | None:
    if not service.name or service.name in owners.values():
        return "each service needs a name of its own"
    if isinstance(service.port, bool) or not isinstance(service.port, int) or not 1 <= service.port <= 65535:
        return f"port {service.port!r} is not a TCP port (1-65535)"
    if service.port == app_port:
        return f"port {service.port} is the app's own $PORT; the service needs another port"
    if service.port in owners:
        return f"port {service.port} is already service {owners[service.port]}'s"
    path = service.socket
    if "\0" in path or not path.startswith("/") or posixpath.normpath(path) != path:
        return "the socket must be an absolute, normalised path"
    if len(path.encode(errors="surrogateescape")) > _SUN_PATH_MAX:
        return f"the socket path is longer than a UNIX socket address allows ({_SUN_PATH_MAX} bytes)"
    return None


@dataclass(frozen=True, slots=True)
class EnvironmentTarget:
    """Everything a runtime needs to converge one environment; no ORM rows."""

    id: int
    name: str
    project: str
    team: str
    generation: int
    spec: EnvironmentSpec
    # The project's secrets, decrypted by the job at the moment it hands them
    # over; never persisted, never printed (repr), never part of equality.
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    # A keyed digest of ``secrets``: changes when they do, so workloads restart.
    secrets_digest: str = ""
    # Where people reach it (the URL provider decides, before the runtime
    # applies): handed to its processes as ENVHUB_PUBLIC_URL.
    public_url: str = ""
    # Set when the URL provider routes through an Ingress the runtime applies.
    ingress: IngressRoute | None = None
    # Who may open the public URL (the project's choice): providers that route
    # outside envhub send a sign-in project's traffic through envhub's gateway.
    url_access: UrlAccess = UrlAccess.public
    # Set when that traffic goes through envhub's gateway: the runtime applies
    # a Service in the namespace that points there.
    gateway: GatewayAddress | None = None
    # Seconds every workload of the apply has to roll out (deployment
    # environments); past it the apply fails naming what did not. None: the
    # runtime's own readiness timeout, after which it tries again later.
    rollout_deadline: float | None = None
    # Managed services run by envhub on this machine, relayed into a local
    # environment's network (issue 13); empty on cluster runtimes.
    service_sockets: tuple[ServiceSocket, ...] = ()
    # Managed services that run in the environment's own namespace (issue 13): the
    # objects that make them (a CloudNativePG Cluster and its Secrets; a Redis's
    # Secret, claim, policy, Service and Deployment), without namespace or the
    # environment's labels. A cluster runtime applies them with the environment's
    # other objects (so they are recorded, pruned and deleted with them); they
    # hold credentials, so they are neither printed nor compared, like ``secrets``.
    # Empty on the local runtime.
    service_objects: tuple[Mapping[str, Any], ...] = field(default=(), repr=False, compare=False)
    # The origin (https://github.com) of the project's GitHub repository, when it has one:
    # git inside asks envhub for that origin's credentials (domain/git_credentials.py).
    git_origin: str = ""
    # Development environments are worked in (a cluster runtime gives one a workspace from its
    # repository's devcontainer.json); deployment environments only run what was released.
    kind: EnvironmentKind = EnvironmentKind.development
    # Set by a cluster runtime while it applies: the repository's dev container and the commit
    # cloned into the workspace. None: no devcontainer.json (or a deployment environment).
    workspace: Workspace | None = None

    @property
    def variables(self) -> dict[str, str]:
        """What envhub tells every process and container of the environment about itself.

        Set after the user's own variables, so they cannot be faked.
        """
        own = {"ENVHUB_ENVIRONMENT": self.name, "ENVHUB_PROJECT": self.project}
        if self.public_url:
            own[PUBLIC_URL_VARIABLE] = self.public_url
        return own

    @property
    def labels(self) -> dict[str, str]:
        return {
            "app.kubernetes.io/managed-by": "envhub",
            "envhub.dev/environment": str(self.id),
            "envhub.dev/project": self.project,
            "envhub.dev/team": self.team,
        }
