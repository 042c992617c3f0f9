"""The operator's catalog of other managed services (issue 13): RabbitMQ, Elasticsearch, anything a
team needs that envhub does not provision itself.

An operator describes each entry once (``ENVHUB_SERVICES_CATALOG``, a YAML
file): Kubernetes manifests or a Helm chart with values, the parameters a
project may set, and the variables a workload receives. A project declares
``{"name": "mq", "kind": "catalog", "entry": "rabbitmq", "parameters": {...}}``;
every environment then gets its own instance in its namespace, with a
password envhub generates, and the variables join the project's secrets like
those of PostgreSQL or Redis.

Templates are filled *after* the YAML is parsed, inside string values only:
a parameter can never add a key, a document or an object. Placeholders are
``${instance}`` (a DNS-safe name for the instance's objects), ``${namespace}``,
``${host}`` (``${instance}.${namespace}.svc``), ``${password}`` and
``${parameters.NAME}``; a value that is exactly one placeholder of a number
stays a string (quote it in YAML where Kubernetes wants a number and use a
parameter's default). Every parameter value must match its pattern.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from envhub.errors import ValidationFailed

_ENTRY_NAME = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
_PARAMETER_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_VARIABLE = re.compile(r"^[A-Z_][A-Z0-9_]{0,99}$")
_SAFE_VALUE = r"^[A-Za-z0-9._:/-]{0,200}$"
MAX_OBJECTS = 50


class _Template(string.Template):
    idpattern = r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)?"


class CatalogParameter(BaseModel):
    """A value a project may set for its instances (a version, a plugin list); validated by ``pattern``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str = ""
    default: str = ""
    pattern: str = _SAFE_VALUE

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _PARAMETER_NAME.fullmatch(value):
            raise ValueError("a parameter's name is lower-case letters, digits and _")
        return value

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"pattern does not compile: {exc}") from None
        return value

    @model_validator(mode="after")
    def _default_fits(self) -> CatalogParameter:
        if not re.fullmatch(self.pattern, self.default):
            raise ValueError(f"the default of {self.name} does not match its pattern")
        return self


class CatalogChart(BaseModel):
    """A Helm chart from a repository or an OCI registry, at an exact version."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    repository: str = ""  # https://charts.example.com (with ``name``), or oci://registry/path/chart
    name: str = ""
    version: str


class CatalogEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    title: str = ""
    description: str = ""
    parameters: tuple[CatalogParameter, ...] = ()
    # One of the two: YAML documents, or a chart with values (both may hold placeholders).
    manifests: str = ""
    chart: CatalogChart | None = None
    values: dict[str, Any] = Field(default_factory=dict)
    # Variable name -> template: what every workload of the environment receives.
    variables: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _ENTRY_NAME.fullmatch(value):
            raise ValueError("an entry's name is lower-case letters, digits and -, starting with a letter")
        return value

    @model_validator(mode="after")
    def _complete(self) -> CatalogEntry:
        if bool(self.manifests.strip()) == (self.chart is not None):
            raise ValueError(f"entry {self.name} needs manifests or a chart (one of them)")
        if not self.variables:
            raise ValueError(f"entry {self.name} gives workloads no variables")
        for variable in self.variables:
            if not _VARIABLE.fullmatch(variable):
                raise ValueError(f"entry {self.name}: {variable!r} is not an upper-case variable name")
        names = [parameter.name for parameter in self.parameters]
        if len(set(names)) != len(names):
            raise ValueError(f"entry {self.name}: parameter names must be unique")
        if self.manifests.strip():
            _documents(self.manifests, self.name)  # parses, or says where it does not
        return self

    @property
    def label(self) -> str:
        return self.title or self.name


class Catalog(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    entries: tuple[CatalogEntry, ...] = ()

    @model_validator(mode="after")
    def _distinct(self) -> Catalog:
        names = [entry.name for entry in self.entries]
        if len(set(names)) != len(names):
            raise ValueError("entry names must be unique")
        return self

    def get(self, name: str) -> CatalogEntry | None:
        return next((entry for entry in self.entries if entry.name == name), None)


def parse_catalog(text: str, *, source: str = "the catalog") -> Catalog:
    """The operator's catalog from YAML (``entries: [...]``); ``ValidationFailed`` names any problem."""
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ValidationFailed(f"{source} is not YAML: {exc}") from None
    try:
        return Catalog.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'catalog'}: "
            f"{str(error['msg']).removeprefix('Value error, ')}"
            for error in exc.errors()
        )
        raise ValidationFailed(f"{source} is invalid: {problems}") from None


def _documents(text: str, entry: str) -> list[dict[str, Any]]:
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as exc:
        raise ValueError(f"entry {entry}: its manifests are not YAML: {exc}") from None
    if not documents or not all(isinstance(doc, dict) and doc.get("kind") for doc in documents):
        raise ValueError(f"entry {entry}: its manifests must be Kubernetes objects")
    if len(documents) > MAX_OBJECTS:
        raise ValueError(f"entry {entry}: at most {MAX_OBJECTS} objects")
    return documents


def resolve_parameters(entry: CatalogEntry, given: Mapping[str, str]) -> dict[str, str]:
    """The entry's parameters with the project's values (checked) and the defaults for the rest."""
    known = {parameter.name: parameter for parameter in entry.parameters}
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ValidationFailed(
            f"{entry.name} has no parameter {', '.join(unknown)}",
            hint=f"Its parameters: {', '.join(known) or 'none'}.",
            details={"entry": entry.name, "parameters": ",".join(unknown)},
        )
    values: dict[str, str] = {}
    for name, parameter in known.items():
        value = str(given.get(name, parameter.default))
        if not re.fullmatch(parameter.pattern, value):
            raise ValidationFailed(
                f"{entry.name}: {value!r} is not a valid {name}",
                hint=parameter.description or f"It must match {parameter.pattern}.",
                details={"entry": entry.name, "parameter": name},
            )
        values[name] = value
    return values


@dataclass(frozen=True, slots=True)
class Placeholders:
    """What templates may say; ``password`` never appears in a message."""

    instance: str
    namespace: str
    password: str
    parameters: Mapping[str, str]

    def mapping(self) -> dict[str, str]:
        values = {
            "instance": self.instance,
            "namespace": self.namespace,
            "host": f"{self.instance}.{self.namespace}.svc",
            "password": self.password,
        }
        values.update({f"parameters.{name}": value for name, value in self.parameters.items()})
        return values

    def __repr__(self) -> str:
        return f"Placeholders({self.instance}, {self.namespace})"


def fill(value: Any, placeholders: Placeholders, *, where: str) -> Any:
    """``value`` (parsed YAML) with placeholders filled in its strings only; keys and structure stay."""
    mapping = placeholders.mapping()
    if isinstance(value, str):
        try:
            return _Template(value).substitute(mapping)
        except KeyError as exc:
            raise ValidationFailed(f"{where}: unknown placeholder ${{{exc.args[0]}}}") from None
        except ValueError as exc:
            raise ValidationFailed(f"{where}: {exc}") from None
    if isinstance(value, dict):
        return {key: fill(item, placeholders, where=where) for key, item in value.items()}
    if isinstance(value, list):
        return [fill(item, placeholders, where=where) for item in value]
    return value


def manifest_objects(entry: CatalogEntry, placeholders: Placeholders) -> list[dict[str, Any]]:
    """The entry's manifests for one instance: parsed, then filled."""
    documents = _documents(entry.manifests, entry.name)
    filled = [fill(document, placeholders, where=f"catalog entry {entry.name}") for document in documents]
    return [document for document in filled if isinstance(document, dict)]


def chart_values(entry: CatalogEntry, placeholders: Placeholders) -> dict[str, Any]:
    filled = fill(entry.values, placeholders, where=f"catalog entry {entry.name}")
    assert isinstance(filled, dict)
    return filled


def variables(entry: CatalogEntry, placeholders: Placeholders) -> dict[str, str]:
    """The variables a workload receives for one instance (their canonical names)."""
    return {
        name: str(fill(template, placeholders, where=f"catalog entry {entry.name}, {name}"))
        for name, template in entry.variables.items()
    }
