"""Deployment environments and their releases, as pure data and pure functions.

A project that deploys declares *how* its workloads are described (a
:class:`ReleaseSource`: manifests in the repository, a Helm chart, a container
image, or on the embedded runtime the project's command) and *which*
deployment environments exist, each with what it declares for itself
(:class:`EnvironmentOverrides`) and what a release must pass before it lands
there (:class:`Promotion`).

A merge renders the source **once**, at one commit, for every deployment
environment (an artifact: the same commit, chart digest, values and image
digests for all), so staging and production differ only in their declared
overrides, and promoting to production carries what staging ran, never a
re-render. The functions here pin images to digests, lay overrides over
objects, digest objects canonically, and diff two renderings object by object.
"""

from __future__ import annotations

import copy
import difflib
import fnmatch
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from enum import StrEnum
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from envhub.domain.naming import validate_label
from envhub.domain.policy import TeamRole
from envhub.domain.workloads import ContainerService
from envhub.errors import ValidationFailed

DEFAULT_ENVIRONMENTS = ("staging", "production")
_SHA = re.compile(r"^[0-9a-f]{40}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_IMAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9._/:-]{0,254}$")
_PATH = re.compile(r"^[A-Za-z0-9._/-]{1,500}$")
_VERSION = re.compile(r"^[A-Za-z0-9.+_-]{1,100}$")
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "ReplicaSet"})
_POD_TEMPLATE_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"})


class SourceKind(StrEnum):
    manifests = "manifests"  # a file or folder of YAML in the repository
    helm = "helm"  # a chart in the repository, a chart repository or an OCI registry
    image = "image"  # the project's container services, images pinned by digest
    command = "command"  # the embedded runtime: the project's command at the commit


class ReleaseStatus(StrEnum):
    rendering = "rendering"  # the artifact is being rendered
    waiting = "waiting"  # for approvals or gates
    deploying = "deploying"  # applied, rolling out
    ready = "ready"  # every workload rolled out
    failed = "failed"
    superseded = "superseded"  # a newer release for the environment came first
    cancelled = "cancelled"


OPEN_STATUSES = frozenset({ReleaseStatus.rendering, ReleaseStatus.waiting})
ACTIVE_STATUSES = frozenset({*OPEN_STATUSES, ReleaseStatus.deploying})
FINAL_STATUSES = frozenset(ReleaseStatus) - ACTIVE_STATUSES


class ReleaseTrigger(StrEnum):
    push = "push"  # a push or merge to a deploy branch, from the GitHub webhook
    api = "api"  # CI called POST /api/v1/projects/{p}/releases
    manual = "manual"  # a person asked for it
    promotion = "promotion"  # what an earlier environment ran
    rollback = "rollback"  # an earlier release's content, again


class ArtifactStatus(StrEnum):
    rendering = "rendering"
    rendered = "rendered"
    failed = "failed"


def _strict(model: type[BaseModel], data: Any, what: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ValidationFailed(
            f"{what}: {where + ': ' if where else ''}{first['msg']}",
            details={"field": f"{what}.{where}" if where else what},
        ) from exc


class ReleaseSource(BaseModel):
    """How a project's deployment environments are described."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: SourceKind = SourceKind.image
    # manifests: a file or folder; helm: the chart's folder in the repository.
    path: str | None = None
    # helm from a chart repository (https://...) or a registry (oci://...), at an exact version.
    chart: str | None = None
    chart_name: str | None = None
    version: str | None = None
    values_files: tuple[str, ...] = ()
    values: dict[str, Any] = Field(default_factory=dict)

    @field_validator("path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        value = value.strip().strip("/") or "."
        if value != "." and (not _PATH.match(value) or ".." in value.split("/")):
            raise ValueError("must be a relative path inside the repository, without '..'")
        return value

    @field_validator("values_files")
    @classmethod
    def _values_files(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            if not _PATH.match(item) or ".." in item.split("/") or item.startswith("/"):
                raise ValueError(f"{item!r} must be a relative path inside the repository, without '..'")
        return value

    @field_validator("version")
    @classmethod
    def _version(cls, value: str | None) -> str | None:
        if value is not None and not _VERSION.match(value):
            raise ValueError("must be an exact chart version such as 1.4.2")
        return value

    @model_validator(mode="after")
    def _complete(self) -> ReleaseSource:
        if self.kind is SourceKind.manifests and not self.path:
            raise ValueError("a manifests source needs the path of a file or folder in the repository")
        if self.kind is SourceKind.helm:
            if bool(self.path) == bool(self.chart):
                raise ValueError(
                    "a Helm source needs either a chart path in the repository or a chart reference"
                )
            if self.chart:
                if not self.chart.startswith(("https://", "http://", "oci://")):
                    raise ValueError(
                        "a chart reference is an https:// chart repository or an oci:// reference"
                    )
                if not self.version:
                    raise ValueError("a chart from a repository or registry needs an exact version")
                if self.chart.startswith(("https://", "http://")) and not self.chart_name:
                    raise ValueError("a chart repository reference needs the chart's name")
        return self

    @property
    def from_repository(self) -> bool:
        """Whether rendering needs the repository at the commit."""
        return self.kind in (SourceKind.manifests, SourceKind.command) or bool(
            self.kind is SourceKind.helm and (self.path or self.values_files)
        )

    def describe(self) -> str:
        if self.kind is SourceKind.manifests:
            return f"manifests at {self.path}"
        if self.kind is SourceKind.helm:
            if self.chart:
                name = f"{self.chart_name} from {self.chart}" if self.chart_name else self.chart
                return f"Helm chart {name} {self.version}"
            return f"Helm chart at {self.path}"
        if self.kind is SourceKind.image:
            return "the project's container services"
        return "the project's command"


class Window(BaseModel):
    """When production may change: days of the week and a time of day, in a time zone."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    days: tuple[str, ...] = _DAYS[:5]
    start: str = "09:00"
    end: str = "17:00"
    timezone: str = "UTC"

    @field_validator("days")
    @classmethod
    def _days(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        days = tuple(day.strip().lower()[:3] for day in value)
        unknown = [day for day in days if day not in _DAYS]
        if unknown or not days:
            raise ValueError(f"days are some of {', '.join(_DAYS)}")
        return days

    @field_validator("start", "end")
    @classmethod
    def _clock(cls, value: str) -> str:
        try:
            time.fromisoformat(value)
        except ValueError as exc:
            raise ValueError("a time of day is HH:MM, 24-hour") from exc
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"{value!r} is not a known time zone (e.g. UTC, Europe/Berlin)") from exc
        return value

    def is_open(self, at: datetime) -> bool:
        local = at.astimezone(ZoneInfo(self.timezone))
        start, end = time.fromisoformat(self.start), time.fromisoformat(self.end)
        now = local.time().replace(tzinfo=None)
        inside = start <= now < end if start <= end else (now >= start or now < end)
        return _DAYS[local.weekday()] in self.days and inside

    def describe(self) -> str:
        return f"{','.join(self.days)} {self.start}-{self.end} {self.timezone}"


class Gates(BaseModel):
    """Automated checks a release must pass before it lands; all that are set must pass."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # The environment it is promoted from has run it, ready, without restarts, this long.
    soak_minutes: Annotated[int, Field(ge=0, le=7 * 24 * 60)] | None = None
    github_checks: bool = False  # the commit's checks and statuses on GitHub are green
    health_url: str | None = None  # answers 2xx or 3xx
    window: Window | None = None

    @field_validator("health_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None
        if not value.startswith(("https://", "http://")) or len(value) > 2000:
            raise ValueError("must be an http(s) URL")
        return value

    @property
    def any(self) -> bool:
        return bool(self.soak_minutes is not None or self.github_checks or self.health_url or self.window)


class Promotion(BaseModel):
    """What a release must pass before it lands in one environment, and what it comes from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # None: releases come from merges and CI. A name: what that environment ran, once ready.
    promote_from: str | None = None
    approvals: Annotated[int, Field(ge=0, le=10)] = 0
    approver_role: TeamRole = TeamRole.admin
    gates: Gates = Gates()
    rollout_deadline_seconds: Annotated[int, Field(ge=10, le=6 * 3600)] = 600
    auto_rollback: bool = False

    @field_validator("approver_role")
    @classmethod
    def _role(cls, value: TeamRole) -> TeamRole:
        if value is TeamRole.viewer:
            raise ValueError("viewers cannot approve; choose member, admin or owner")
        return value


class EnvironmentOverrides(BaseModel):
    """What one deployment environment declares for itself; everything else is shared."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    values: dict[str, Any] = Field(default_factory=dict)  # Helm values laid over the shared ones
    replicas: dict[str, Annotated[int, Field(ge=0, le=1000)]] = Field(default_factory=dict)
    hosts: dict[str, str] = Field(default_factory=dict)  # Ingress host -> this environment's host
    env: dict[str, str] = Field(default_factory=dict)  # variables for every container

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
                raise ValueError(f"{key!r} is not a variable name")
        return value

    @property
    def empty(self) -> bool:
        return not (self.values or self.replicas or self.hosts or self.env)


class DeploymentEnvironment(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    overrides: EnvironmentOverrides = EnvironmentOverrides()
    promotion: Promotion = Promotion()

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return validate_label(value.strip(), field="deployment environment name")


def _default_environments() -> tuple[DeploymentEnvironment, ...]:
    return (
        DeploymentEnvironment(name="staging"),
        DeploymentEnvironment(name="production", promotion=Promotion(promote_from="staging", approvals=1)),
    )


class DeploymentSettings(BaseModel):
    """A project's deployment environments: what they run, from which branches, and their rules."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: ReleaseSource = ReleaseSource()
    # Pushes (merges) to these make a release for every environment promoted from none.
    branches: tuple[str, ...] = ("main",)
    # Glob patterns of release branches (release/*), also deployed on push.
    release_branches: tuple[str, ...] = ()
    # "push": the GitHub webhook's push events; "api": only CI calls (with image digests).
    release_on: str = "push"
    environments: tuple[DeploymentEnvironment, ...] = Field(default_factory=_default_environments)

    @field_validator("release_on")
    @classmethod
    def _release_on(cls, value: str) -> str:
        if value not in ("push", "api"):
            raise ValueError("is push (the GitHub webhook) or api (CI calls only)")
        return value

    @field_validator("branches", "release_branches")
    @classmethod
    def _branches(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for branch in value:
            if not re.match(r"^[A-Za-z0-9._/*-]{1,200}$", branch):
                raise ValueError(f"{branch!r} is not a branch name or pattern")
        return value

    @model_validator(mode="after")
    def _graph(self) -> DeploymentSettings:
        names = [env.name for env in self.environments]
        if not names:
            raise ValueError("at least one deployment environment is needed")
        if len(set(names)) != len(names):
            raise ValueError("deployment environment names must be unique")
        known = set(names)
        for env in self.environments:
            source = env.promotion.promote_from
            if source is not None and source not in known:
                raise ValueError(f"{env.name} is promoted from {source}, which is not one of them")
            if source == env.name:
                raise ValueError(f"{env.name} cannot be promoted from itself")
        # No cycles: following promote_from from any environment ends.
        for env in self.environments:
            seen, current = set(), env
            while current.promotion.promote_from is not None:
                if current.name in seen:
                    raise ValueError("promote_from must not form a cycle")
                seen.add(current.name)
                current = self.environment(current.promotion.promote_from)
        if not any(env.promotion.promote_from is None for env in self.environments):
            raise ValueError("one environment must take releases from merges (promote_from empty)")
        return self

    def declared(self, name: str) -> DeploymentEnvironment | None:
        """The environment ``name`` as the settings declare it; None when they no longer do."""
        return next((env for env in self.environments if env.name == name), None)

    def environment(self, name: str) -> DeploymentEnvironment:
        declared = self.declared(name)
        if declared is None:
            raise ValidationFailed(f"{name!r} is not one of this project's deployment environments")
        return declared

    def first(self) -> tuple[DeploymentEnvironment, ...]:
        """The environments a merge or a CI call releases to directly."""
        return tuple(env for env in self.environments if env.promotion.promote_from is None)

    def promoted_from(self, name: str) -> tuple[DeploymentEnvironment, ...]:
        return tuple(env for env in self.environments if env.promotion.promote_from == name)

    def deploys(self, branch: str) -> bool:
        return branch in self.branches or any(fnmatch.fnmatchcase(branch, p) for p in self.release_branches)


def parse_settings(data: Mapping[str, Any] | None) -> DeploymentSettings | None:
    """A project's stored settings; None when it has no deployment environments."""
    if not data:
        return None
    settings: DeploymentSettings = _strict(DeploymentSettings, dict(data), "deployments")
    return settings


def check_settings(
    data: Mapping[str, Any], *, services: Sequence[ContainerService], local: bool
) -> DeploymentSettings:
    """Settings a person sent, validated against what the project and runtime can do."""
    settings: DeploymentSettings = _strict(DeploymentSettings, dict(data), "deployments")
    kind = settings.source.kind
    if local and kind is not SourceKind.command:
        raise ValidationFailed(
            f"the embedded runtime deploys the project's command; "
            f"a {kind.value} source needs the Kubernetes runtime",
            details={"field": "deployments.source.kind"},
        )
    if not local and kind is SourceKind.command:
        raise ValidationFailed(
            "on Kubernetes a deployment runs manifests, a Helm chart or container images",
            details={"field": "deployments.source.kind"},
        )
    if kind is SourceKind.image and not services:
        raise ValidationFailed(
            "an image source deploys the project's container services; the project has none",
            hint="Add services to the project, or choose manifests or a Helm chart.",
            details={"field": "deployments.source.kind"},
        )
    return settings


# --- image digests --------------------------------------------------------------------


def check_images(images: Mapping[str, str]) -> dict[str, str]:
    """``{image name: sha256 digest}`` as CI sends it, validated."""
    checked: dict[str, str] = {}
    for name, digest in images.items():
        bare = _image_name(str(name))
        if not _IMAGE_NAME.match(bare):
            raise ValidationFailed(f"{name!r} is not an image name", details={"field": "images"})
        if not _DIGEST.match(str(digest)):
            raise ValidationFailed(
                f"the digest of {name} must be sha256:<64 hex digits>, not {digest!r}",
                hint="Pass the digest your registry returned for the push (docker buildx --metadata-file).",
                details={"field": "images"},
            )
        checked[bare] = str(digest)
    return checked


def check_commit(commit: str) -> str:
    value = commit.strip().lower()
    if not _SHA.match(value):
        raise ValidationFailed(
            "commit must be the full 40-character SHA of the commit to release", details={"field": "commit"}
        )
    return value


def _image_name(reference: str) -> str:
    """``registry/repo`` of ``registry/repo:tag@sha256:...`` (ports kept)."""
    name = reference.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name = name[:colon]
    return name


def _containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = obj.get("spec") or {}
    if obj.get("kind") == "Pod":
        pod = spec
    elif obj.get("kind") == "CronJob":
        pod = (((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}).get("spec") or {}
    else:
        pod = (spec.get("template") or {}).get("spec") or {}
    return [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]


def pin_image(image: str, digests: Mapping[str, str]) -> str:
    """``image`` at the digest ``digests`` names for it (``repo@sha256:...``), else as it was."""
    digest = digests.get(_image_name(image))
    return f"{_image_name(image)}@{digest}" if digest else image


def pin_images(objects: Iterable[dict[str, Any]], digests: Mapping[str, str]) -> list[dict[str, Any]]:
    """Copies of ``objects`` whose container images named in ``digests`` run exactly that digest."""
    pinned = []
    for obj in objects:
        copied = copy.deepcopy(obj)
        for container in _containers(copied):
            if container.get("image"):
                container["image"] = pin_image(str(container["image"]), digests)
        pinned.append(copied)
    return pinned


def images_of(objects: Iterable[dict[str, Any]]) -> dict[str, str]:
    """Every container image the objects run: ``{reference: digest or ""}``."""
    found: dict[str, str] = {}
    for obj in objects:
        for container in _containers(obj):
            image = str(container.get("image") or "")
            if image:
                found[image] = image.split("@", 1)[1] if "@" in image else ""
    return dict(sorted(found.items()))


# --- per-environment overrides --------------------------------------------------------


def apply_overrides(
    objects: Iterable[dict[str, Any]], overrides: EnvironmentOverrides
) -> list[dict[str, Any]]:
    """Copies of ``objects`` with one environment's declared differences laid over them.

    Replicas by workload name (``*`` for all), Ingress hosts renamed, and
    variables added to every container (an override wins over the manifest's
    value of the same name). Helm values are not handled here: they are part
    of rendering.
    """
    result = []
    for obj in objects:
        copied = copy.deepcopy(obj)
        name = str((copied.get("metadata") or {}).get("name", ""))
        kind = copied.get("kind")
        if kind in _WORKLOAD_KINDS:
            replicas = overrides.replicas.get(name, overrides.replicas.get("*"))
            if replicas is not None:
                copied.setdefault("spec", {})["replicas"] = replicas
        if kind == "Ingress" and overrides.hosts:
            spec = copied.get("spec") or {}
            for rule in spec.get("rules") or []:
                if rule.get("host") in overrides.hosts:
                    rule["host"] = overrides.hosts[rule["host"]]
            for tls in spec.get("tls") or []:
                tls["hosts"] = [overrides.hosts.get(host, host) for host in tls.get("hosts") or []]
        if overrides.env and kind in {*_POD_TEMPLATE_KINDS, "Pod", "CronJob"}:
            for container in _containers(copied):
                kept = [item for item in container.get("env") or [] if item.get("name") not in overrides.env]
                container["env"] = kept + [
                    {"name": key, "value": value} for key, value in sorted(overrides.env.items())
                ]
        result.append(copied)
    return result


# --- canonical form, digests, diffs ------------------------------------------------------


def object_key(obj: Mapping[str, Any]) -> str:
    """``Kind/name`` (with the group for custom kinds)."""
    kind = str(obj.get("kind", "?"))
    group = str(obj.get("apiVersion", "")).rpartition("/")[0]
    builtin = group in (
        "",
        "apps",
        "batch",
        "networking.k8s.io",
        "rbac.authorization.k8s.io",
        "policy",
        "autoscaling",
    )
    prefix = kind if builtin else f"{kind}.{group}"
    return f"{prefix}/{(obj.get('metadata') or {}).get('name', '?')}"


def canonical_yaml(objects: Sequence[Mapping[str, Any]]) -> str:
    """The objects as one multi-document YAML, keys sorted: equal objects, equal text.

    libyaml's emitter (with PyYAML's safe representer): a fifth of the pure-Python time.
    """
    return "".join(
        "---\n" + yaml.dump(dict(obj), Dumper=yaml.CSafeDumper, sort_keys=True, default_flow_style=False)
        for obj in objects
    )


def digest_of(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def digest_json(value: Any) -> str:
    return digest_of(json.dumps(value, sort_keys=True, separators=(",", ":")))


def load_objects(text: str) -> list[dict[str, Any]]:
    """Objects of a rendering envhub stored (canonical YAML it wrote itself)."""
    return [doc for doc in yaml.safe_load_all(text) if isinstance(doc, dict)]


def _placed_anywhere(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object without its namespace: each environment has its own, which is no difference."""
    copied = copy.deepcopy(dict(obj))
    (copied.get("metadata") or {}).pop("namespace", None)
    return copied


@dataclass(frozen=True, slots=True)
class ObjectChange:
    key: str  # Kind/name
    change: str  # added | removed | changed
    lines: tuple[str, ...]  # a unified diff of the object's YAML


def diff_objects(old: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]]) -> list[ObjectChange]:
    """What changes, object by object, when ``new`` replaces ``old``; unchanged objects are left out."""
    before = {object_key(obj): _placed_anywhere(obj) for obj in old}
    after = {object_key(obj): _placed_anywhere(obj) for obj in new}
    changes = []
    for key in sorted(before.keys() | after.keys()):
        a, b = before.get(key), after.get(key)
        if a == b:
            continue
        text_a = yaml.safe_dump(dict(a), sort_keys=True).splitlines() if a is not None else []
        text_b = yaml.safe_dump(dict(b), sort_keys=True).splitlines() if b is not None else []
        lines = tuple(difflib.unified_diff(text_a, text_b, fromfile=key, tofile=key, lineterm="", n=3))
        change = "added" if a is None else "removed" if b is None else "changed"
        changes.append(ObjectChange(key=key, change=change, lines=lines))
    return changes


# --- gates ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GateResult:
    gate: str  # approvals | soak | github_checks | health_url | window
    passed: bool
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"gate": self.gate, "passed": self.passed, "reason": self.reason}


def soak_result(
    minutes: int, ready_since: datetime | None, restarts: int, now: datetime, source: str
) -> GateResult:
    if ready_since is None:
        return GateResult("soak", False, f"{source} is not running this release ready yet")
    if restarts:
        return GateResult("soak", False, f"{source} restarted {restarts} time(s) since it became ready")
    left = ready_since + timedelta(minutes=minutes) - now
    if left > timedelta(0):
        return GateResult(
            "soak",
            False,
            f"{source} has been ready {int((now - ready_since).total_seconds() // 60)} of {minutes} minutes",
        )
    return GateResult("soak", True, f"{source} ready for {minutes}+ minutes without restarts")


def window_result(window: Window, now: datetime) -> GateResult:
    if window.is_open(now):
        return GateResult("window", True, f"inside the deploy window ({window.describe()})")
    return GateResult("window", False, f"outside the deploy window ({window.describe()})")


def approvals_result(needed: int, given: Sequence[str], role: TeamRole) -> GateResult:
    if len(given) >= needed:
        who = f" ({', '.join(given)})" if given else ""
        return GateResult("approvals", True, f"{len(given)} of {needed} approval(s){who}")
    return GateResult(
        "approvals", False, f"{len(given)} of {needed} approval(s) from a team {role.value} or above"
    )


# --- rendering ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RenderRequest:
    """Everything rendering an artifact needs; no rows, no secrets but the fetch token."""

    project: str
    commit: str
    ref: str
    repo_url: str | None
    source: ReleaseSource
    environments: tuple[DeploymentEnvironment, ...]
    images: Mapping[str, str]
    # The project's defaults (command, env, services, quota, egress) as a spec dict.
    base_spec: Mapping[str, Any]
    token: str | None = None  # reads the repository (a GitHub installation token), never stored
    # Each environment's namespace, for charts that name .Release.Namespace (DNS names, subjects).
    namespaces: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RenderedArtifact:
    """What rendering made: per environment its objects (canonical YAML) and the spec to apply."""

    rendered: Mapping[str, str]
    specs: Mapping[str, Mapping[str, Any]]
    chart: Mapping[str, Any]
    notes: str = ""


def command_objects(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The embedded runtime's release as one object, so releases diff the same way everywhere.

    Its name is the same in every environment (as a chart's objects are), so
    staging's and production's renderings pair up object by object when compared.
    """
    return [
        {
            "apiVersion": "envhub.dev/v1",
            "kind": "Process",
            "metadata": {"name": "app"},
            "spec": {
                "command": spec.get("command", ""),
                "repo_url": spec.get("repo_url"),
                "ref": spec.get("ref"),
                "env": dict(sorted((spec.get("env") or {}).items())),
                "health_path": spec.get("health_path", "/"),
            },
        }
    ]


def render_command_source(request: RenderRequest) -> RenderedArtifact:
    """The embedded runtime's artifact: the project's command and variables at the commit."""
    rendered: dict[str, str] = {}
    specs: dict[str, Mapping[str, Any]] = {}
    for env in request.environments:
        spec = {
            **dict(request.base_spec),
            # Without a repository there is nothing to check out: the command is the release.
            "ref": request.commit if request.repo_url else request.base_spec.get("ref"),
            "env": {**dict(request.base_spec.get("env") or {}), **env.overrides.env},
        }
        specs[env.name] = spec
        rendered[env.name] = canonical_yaml(command_objects(spec))
    return RenderedArtifact(rendered=rendered, specs=specs, chart={})
