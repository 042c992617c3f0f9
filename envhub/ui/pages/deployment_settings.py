"""The deployments page's settings editor: a form for the common fields, and the whole document as JSON.

Both edit one document, the project's stored deployment settings: the form
lays what it shows over it (so what only the JSON reaches, Helm values and
hosts, survives a save from the form), and the JSON editor opens on what the
form holds. ``services/releases.configure_deployments`` validates; an error
naming a field (``details.field``, e.g. ``deployments.environments.1.promotion.approvals``)
is shown under that field.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import reflex as rx

from envhub.domain.humanize import parse_id
from envhub.errors import EnvhubError, ValidationFailed
from envhub.services import releases
from envhub.services.inputs import parse_env_lines, parse_lines
from envhub.ui.feedback import NO_ERROR, ErrorView, error_view, unexpected_view
from envhub.ui.state import AuthState

KINDS = ["command", "manifests", "helm", "image"]
ROLES = ["member", "admin", "owner"]
FROM_MERGES = "merges and CI"
_SOURCE_KEYS = ("kind", "path", "chart", "chart_name", "version", "values_files")
# Where a settings error names a field, and the form key that shows it.
_ENV_FIELDS = {
    "name": "name",
    "replicas": "replicas",
    "env": "env",
    "promote_from": "promote_from",
    "approvals": "approvals",
    "approver_role": "approver_role",
    "soak_minutes": "soak",
    "health_url": "health_url",
    "window": "window",
    "github_checks": "github_checks",
    "auto_rollback": "auto_rollback",
}
_ENV_KEYS = (
    "name", "promote_from", "approvals", "approver_role", "soak", "github_checks", "health_url",
    "window", "days", "start", "end", "timezone", "auto_rollback", "replicas", "env",
)  # fmt: skip


def default_document() -> dict[str, Any]:
    """Staging and production, production promoted from staging with one admin's approval."""
    kind = "command" if releases.is_local() else "image"
    return {
        "source": {"kind": kind},
        "branches": ["main"],
        "release_branches": [],
        "release_on": "push",
        "environments": [
            {"name": "staging"},
            {
                "name": "production",
                "promotion": {"promote_from": "staging", "approvals": 1, "approver_role": "admin"},
            },
        ],
    }


def _lines(mapping: dict[str, Any]) -> str:
    return "\n".join(f"{key}={value}" for key, value in mapping.items())


def _env_form(doc: dict[str, Any]) -> dict[str, str]:
    overrides, promotion = doc.get("overrides") or {}, doc.get("promotion") or {}
    gates = promotion.get("gates") or {}
    window = gates.get("window")
    soak = gates.get("soak_minutes")
    form = {
        "name": str(doc.get("name", "")),
        "orig": str(doc.get("name", "")),
        "promote_from": promotion.get("promote_from") or FROM_MERGES,
        "approvals": str(promotion.get("approvals", 0)),
        "approver_role": str(promotion.get("approver_role", "admin")),
        "soak": "" if soak is None else str(soak),
        "github_checks": "true" if gates.get("github_checks") else "false",
        "health_url": str(gates.get("health_url") or ""),
        "window": "true" if window else "false",
        "days": ",".join((window or {}).get("days", ["mon", "tue", "wed", "thu", "fri"])),
        "start": str((window or {}).get("start", "09:00")),
        "end": str((window or {}).get("end", "17:00")),
        "timezone": str((window or {}).get("timezone", "UTC")),
        "auto_rollback": "true" if promotion.get("auto_rollback") else "false",
        "replicas": _lines(overrides.get("replicas") or {}),
        "env": _lines(overrides.get("env") or {}),
    }
    return {**form, **{f"err_{key}": "" for key in _ENV_KEYS}}


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, details={"field": field})


def _pairs(text: str, field: str) -> dict[str, str]:
    """``KEY=VALUE`` lines; a line that is not one is refused naming ``field`` (``details.field``)."""
    try:
        return parse_env_lines(text, field=field)
    except ValidationFailed as exc:
        raise _invalid(field, exc.message) from exc


def _env_document(form: dict[str, str], base: dict[str, Any], index: int) -> dict[str, Any]:
    """One environment's form laid over what is stored for it."""
    where = f"deployments.environments.{index}"
    doc = copy.deepcopy(base)
    doc["name"] = form["name"].strip()
    overrides = doc.setdefault("overrides", {})
    replicas = {}
    for key, value in _pairs(form["replicas"], f"{where}.overrides.replicas").items():
        if not value.strip().isdigit():
            raise _invalid(f"{where}.overrides.replicas", f"{key}: replicas is a whole number, not {value!r}")
        replicas[key] = int(value)
    overrides["replicas"] = replicas
    overrides["env"] = _pairs(form["env"], f"{where}.overrides.env")
    promotion = doc.setdefault("promotion", {})
    source = form["promote_from"]
    promotion["promote_from"] = None if source in ("", FROM_MERGES) else source
    approvals = form["approvals"].strip() or "0"
    if not approvals.isdigit():
        raise _invalid(f"{where}.promotion.approvals", "approvals is a whole number")
    promotion["approvals"] = int(approvals)
    promotion["approver_role"] = form["approver_role"]
    promotion["auto_rollback"] = form["auto_rollback"] == "true"
    gates = promotion.setdefault("gates", {})
    soak = form["soak"].strip()
    if soak and not soak.isdigit():
        raise _invalid(f"{where}.promotion.gates.soak_minutes", "soak is a number of minutes")
    gates["soak_minutes"] = int(soak) if soak else None
    gates["github_checks"] = form["github_checks"] == "true"
    gates["health_url"] = form["health_url"].strip() or None
    gates["window"] = (
        {
            "days": [day.strip() for day in form["days"].split(",") if day.strip()],
            "start": form["start"].strip(),
            "end": form["end"].strip(),
            "timezone": form["timezone"].strip() or "UTC",
        }
        if form["window"] == "true"
        else None
    )
    return doc


class DeploymentSettingsState(AuthState):
    open: bool = False
    advanced: bool = False
    saving: bool = False
    configured: bool = False
    src: dict[str, str] = rx.field(default_factory=dict)
    src_errors: dict[str, str] = rx.field(default_factory=dict)
    envs: list[dict[str, str]] = rx.field(default_factory=list)
    json_text: str = ""
    error: ErrorView = NO_ERROR
    _project_id: int = 0
    _doc: dict[str, Any] = rx.field(default_factory=dict)

    @rx.var
    def env_sources(self) -> list[str]:
        """What an environment can be promoted from: merges and CI, or another environment."""
        return [FROM_MERGES, *[env["name"] for env in self.envs if env.get("name")]]

    def _show(self, doc: dict[str, Any]) -> None:
        self._doc = copy.deepcopy(doc)
        source = doc.get("source") or {}
        self.src = {
            "kind": str(source.get("kind", "command")),
            "path": str(source.get("path") or ""),
            "chart": str(source.get("chart") or ""),
            "chart_name": str(source.get("chart_name") or ""),
            "version": str(source.get("version") or ""),
            "values_files": "\n".join(source.get("values_files") or []),
            "branches": ", ".join(doc.get("branches") or []),
            "release_branches": ", ".join(doc.get("release_branches") or []),
            "release_on": str(doc.get("release_on", "push")),
        }
        self.envs = [_env_form(env) for env in doc.get("environments") or []]
        self.src_errors, self.error = {}, NO_ERROR

    @rx.event
    def edit(self, stored: dict[str, Any]):
        """Open the editor on the stored settings (or on staging and production when there are none)."""
        self._project_id = parse_id(str(self.router.page.params.get("project_id", "")))
        self.configured = bool(stored)
        self._show(stored or default_document())
        self.open, self.advanced = True, False

    @rx.event
    def close(self) -> None:
        self.open = False

    @rx.event
    def set_src(self, field: str, value: str) -> None:
        self.src = {**self.src, field: value}
        self.src_errors = {k: v for k, v in self.src_errors.items() if k != field}

    @rx.event
    def set_env(self, index: int, field: str, value: Any) -> None:
        if isinstance(value, bool):
            value = "true" if value else "false"
        envs = [dict(env) for env in self.envs]
        envs[index][field] = str(value)
        envs[index][f"err_{field}"] = ""
        self.envs = envs

    @rx.event
    def add_environment(self) -> None:
        taken = {env["name"] for env in self.envs}
        name = next(n for n in (f"env{i}" for i in range(1, 100)) if n not in taken)
        self.envs = [*self.envs, _env_form({"name": name})]

    @rx.event
    def remove_environment(self, index: int) -> None:
        self.envs = [env for i, env in enumerate(self.envs) if i != index]

    def _document(self) -> dict[str, Any]:
        """The form laid over the stored document."""
        doc = copy.deepcopy(self._doc)
        stored_source = doc.get("source") or {}
        kind = self.src["kind"]
        source: dict[str, Any] = {"kind": kind}
        if stored_source.get("values"):
            source["values"] = stored_source["values"]
        if kind == "manifests" or (kind == "helm" and self.src["path"].strip()):
            source["path"] = self.src["path"].strip()
        if kind == "helm" and not self.src["path"].strip():
            for key in ("chart", "chart_name", "version"):
                if self.src[key].strip():
                    source[key] = self.src[key].strip()
        if kind == "helm":
            source["values_files"] = parse_lines(self.src["values_files"].replace(",", "\n"))
        doc["source"] = source
        doc["branches"] = [b.strip() for b in self.src["branches"].split(",") if b.strip()]
        doc["release_branches"] = [b.strip() for b in self.src["release_branches"].split(",") if b.strip()]
        doc["release_on"] = self.src["release_on"]
        stored = {env.get("name"): env for env in doc.get("environments") or []}
        doc["environments"] = [
            _env_document(form, stored.get(form["orig"], {}), index) for index, form in enumerate(self.envs)
        ]
        return doc

    @rx.event
    def toggle_advanced(self) -> None:
        if self.advanced:
            self.advanced = False
            return
        try:
            self.json_text = json.dumps(self._document(), indent=2)
        except EnvhubError as exc:
            self._show_error(exc)
            return
        self.advanced, self.error = True, NO_ERROR

    @rx.event
    def set_json(self, value: str) -> None:
        self.json_text = value

    def _show_error(self, exc: EnvhubError) -> None:
        """Under the field ``details.field`` names, if the form shows it; else in the callout."""
        field = str(exc.details.get("field", ""))
        parts = field.split(".")
        # Under its field the message need not name the field again ("deployments: environments.1...: ").
        where = ".".join(parts[1:])
        inline = exc.message.removeprefix(f"deployments: {where}: ") if where else exc.message
        if parts[:2] == ["deployments", "environments"] and len(parts) > 2 and parts[2].isdigit():
            index = int(parts[2])
            key = next((_ENV_FIELDS[p] for p in reversed(parts[3:]) if p in _ENV_FIELDS), "")
            if key and index < len(self.envs) and not self.advanced:
                envs = [dict(env) for env in self.envs]
                envs[index][f"err_{key}"] = inline
                self.envs = envs
                return
        source_key = {
            "deployments.source.kind": "kind",
            "deployments.source.path": "path",
            "deployments.source.chart": "chart",
            "deployments.source.chart_name": "chart_name",
            "deployments.source.version": "version",
            "deployments.source": "kind",
            "deployments.release_on": "release_on",
        }.get(field) or ("values_files" if field.startswith("deployments.source.values_files") else "")
        if not source_key and field.startswith(("deployments.branches", "deployments.release_branches")):
            source_key = parts[1]
        if source_key and not self.advanced:
            self.src_errors = {**self.src_errors, source_key: inline}
            return
        self.error = error_view(exc)

    @rx.event
    def save(self, _form: dict[str, Any] | None = None):
        if self.saving:
            return
        self.saving, self.error, self.src_errors = True, NO_ERROR, {}
        self.envs = [{**env, **{f"err_{key}": "" for key in _ENV_KEYS}} for env in self.envs]
        yield
        try:
            if self.advanced:
                try:
                    document = json.loads(self.json_text)
                except json.JSONDecodeError as exc:
                    raise ValidationFailed(
                        f"not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
                        details={"field": "deployments"},
                    ) from exc
                if not isinstance(document, dict):
                    raise ValidationFailed("the settings are a JSON object", details={"field": "deployments"})
            else:
                document = self._document()
            with self._acting() as (session, actor):
                releases.configure_deployments(
                    session=session, actor=actor, project_id=self._project_id, settings=document
                )
        except EnvhubError as exc:
            self.saving = False
            self._show_error(exc)
            return
        except Exception as exc:
            self.saving = False
            self.error = unexpected_view(exc)
            return
        self.saving, self.open = False, False
        done = "Deployment settings saved" if self.configured else "Staging and production are set up"
        yield rx.toast.success(done, description="The environments run once a release lands.")
