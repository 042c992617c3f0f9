"""A project's container workloads in the new-project form: services, manifests, egress.

They matter to image-based runtimes (Kubernetes). People write container
services as YAML; ``services/inputs.py`` turns the text into the list of dicts
``create_project(workloads=...)`` validates, and this module maps the form's
fields onto it and puts the errors it raises back next to the field they are
about (spec errors name a path such as ``services.1.image``, manifest errors a
document number). The project page's summary of the stored defaults is in
``services/project_views.py``.
"""

from __future__ import annotations

from typing import Any

from envhub.domain.workloads import ContainerService
from envhub.errors import EnvhubError
from envhub.services.inputs import parse_lines, parse_services

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


def workloads_from_form(form: dict[str, str]) -> dict[str, Any] | None:
    """The ``workloads`` argument of ``create_project``; ``None`` when all fields are empty."""
    workloads: dict[str, Any] = {}
    if services := parse_services(form.get(SERVICES, ""), field=SERVICES):
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
