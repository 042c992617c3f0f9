"""A project's container workloads in the dashboard: services, manifests, egress.

They matter to image-based runtimes (Kubernetes). People write container
services as YAML in the new-project form; this turns the text into the list of
dicts ``services.projects.create_project(workloads=...)`` validates, puts the
errors it raises back next to the field they are about (spec errors name a path
such as ``services.1.image``, manifest errors a document number), and sums the
stored defaults up for the project page.
"""

from __future__ import annotations

import shlex
from typing import Any, TypedDict

import yaml

from envhub.domain.kube import parse_manifests
from envhub.domain.workloads import ContainerService
from envhub.errors import EnvhubError, ValidationFailed

# Form field keys of the workload section.
SERVICES = "services"
MANIFESTS = "manifests"
EGRESS_FIELDS = {"cidrs": "egress_cidrs", "namespaces": "egress_namespaces", "services": "egress_services"}
FIELDS = (SERVICES, MANIFESTS, *EGRESS_FIELDS.values())
SERVICE_KEYS = tuple(ContainerService.model_fields)
_MANIFEST_CODES = ("manifest_invalid", "manifest_rejected")

SERVICES_EXAMPLE = """\
- name: web
  image: ghcr.io/acme/shop:1.4.2
  ports: [8080]
  env:
    LOG_LEVEL: info
  health: {path: /healthz}
- name: worker
  image: ghcr.io/acme/shop:1.4.2
  command: [python, -m, shop.worker]
  resources: {cpu: 250m, memory: 256Mi}"""

MANIFESTS_EXAMPLE = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: shop-settings
data:
  FEATURE_CHECKOUT: "on"
---
apiVersion: v1
kind: Secret
metadata:
  name: shop-api-key
stringData:
  API_KEY: change-me"""


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, details={field: message})


def _text(value: Any) -> Any:
    """YAML reads ``DEBUG: 1`` or ``--port 8080`` as numbers; a container wants strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float) or value.__class__.__module__ == "datetime":
        return str(value)
    return value


def parse_services(text: str) -> list[dict[str, Any]]:
    """The services YAML (a list of mappings) as plain data; blank means none."""
    if not text.strip():
        return []
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "cannot be parsed"
        raise _invalid(SERVICES, f"not valid YAML{where}: {problem}") from exc
    if isinstance(data, dict) and set(data) == {"services"}:
        data = data["services"]  # a pasted "services:" block
    if data is None:
        return []
    if not isinstance(data, list):
        raise _invalid(SERVICES, "expected a list of services, each starting with '- name: …'")
    services = []
    for number, item in enumerate(data, start=1):
        if not isinstance(item, dict):
            raise _invalid(SERVICES, f"service {number} is not a mapping (name: …, image: …)")
        service = dict(item)
        if isinstance(service.get("env"), dict):
            service["env"] = {str(key): _text(value) for key, value in service["env"].items()}
        for key in ("command", "args"):
            if isinstance(service.get(key), list):
                service[key] = [_text(value) for value in service[key]]
            elif isinstance(service.get(key), str):
                try:  # "python -m shop.worker" reads as a command line
                    service[key] = shlex.split(service[key])
                except ValueError as exc:
                    raise _invalid(SERVICES, f"service {number}, {key}: {exc}") from exc
        services.append(service)
    return services


def parse_lines(text: str) -> list[str]:
    """One entry per line; blank lines and ``#`` comments ignored."""
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def workloads_from_form(form: dict[str, str]) -> dict[str, Any] | None:
    """The ``workloads`` argument of ``create_project``; ``None`` when all fields are empty."""
    workloads: dict[str, Any] = {}
    if services := parse_services(form.get(SERVICES, "")):
        workloads["services"] = services
    if (manifests := form.get(MANIFESTS, "")).strip():
        workloads["manifests"] = manifests
    egress = {
        key: lines for key, field in EGRESS_FIELDS.items() if (lines := parse_lines(form.get(field, "")))
    }
    if egress:
        workloads["egress"] = egress
    return workloads or None


def _service_label(index: str, services: list[dict[str, Any]]) -> str:
    if not index.isdigit():
        return ""
    position = int(index)
    name = services[position].get("name") if position < len(services) else None
    return f"{name} (service {position + 1})" if name else f"service {position + 1}"


def _explain(message: str) -> str:
    if message == "Extra inputs are not permitted":
        return "unknown field (allowed: " + ", ".join(SERVICE_KEYS) + ")"
    return message


def _path(parts: list[str]) -> str:
    """``["ports", "0"]`` -> ``ports #1``: people count list items from one."""
    return ".".join(f"#{int(p) + 1}" if p.isdigit() else p for p in parts).replace(".#", " #")


def workload_errors(exc: EnvhubError, services: list[dict[str, Any]]) -> dict[str, str]:
    """Messages for the workload fields ``exc`` is about, by form field key."""
    if exc.code in _MANIFEST_CODES:
        return {MANIFESTS: exc.message}
    if exc.code == "egress_denied":  # details["field"]: "egress.cidrs[0]"
        kind = str(exc.details.get("field", "")).removeprefix("egress.").partition("[")[0]
        return {EGRESS_FIELDS.get(kind, EGRESS_FIELDS["cidrs"]): exc.message}
    found: dict[str, list[str]] = {}
    per_service: dict[str, list[str]] = {}
    for key, value in exc.details.items():
        if not isinstance(value, str):
            continue
        parts = key.split(".")
        if parts[0] == "services":
            label = _service_label(parts[1], services) if len(parts) > 1 else ""
            path = _path(parts[2:])
            per_service.setdefault(label, []).append(f"{path}: {_explain(value)}" if path else value)
        elif parts[0] == "manifests":
            found.setdefault(MANIFESTS, []).append(value)
        elif parts[0] == "egress":
            field = EGRESS_FIELDS.get(parts[1] if len(parts) > 1 else "", EGRESS_FIELDS["cidrs"])
            found.setdefault(field, []).append(_explain(value))
    if per_service:
        found[SERVICES] = [
            f"{label}: {', '.join(problems)}" if label else ", ".join(problems)
            for label, problems in per_service.items()
        ]
    return {field: "\n".join(messages) for field, messages in found.items()}


# -- the project page's defaults card --------------------------------------


class ServiceRow(TypedDict):
    name: str
    image: str
    ports: str
    replicas: str


def manifest_count(text: str | None) -> str:
    if not text or not text.strip():
        return ""
    try:
        count = len(parse_manifests(text))
    except EnvhubError:  # stored before a stricter check: say so rather than fail the page
        return "unreadable (redeploy shows the error)"
    return f"{count} document{'' if count == 1 else 's'}"


_EGRESS_NOUNS = (("cidrs", "CIDR", "CIDRs"), ("namespaces", "namespace", "namespaces"),
                 ("services", "service", "services"))  # fmt: skip


def egress_summary(egress: dict[str, Any]) -> str:
    parts = []
    for key, one, many in _EGRESS_NOUNS:
        count = len(egress.get(key) or [])
        if count:
            parts.append(f"{count} {one if count == 1 else many}")
    return ", ".join(parts)


def service_rows(services: list[dict[str, Any]]) -> list[ServiceRow]:
    return [
        ServiceRow(
            name=str(service.get("name", "")),
            image=str(service.get("image", "")),
            ports=", ".join(str(port) for port in service.get("ports") or []),
            replicas=str(service.get("replicas", 1)),
        )
        for service in services
    ]
