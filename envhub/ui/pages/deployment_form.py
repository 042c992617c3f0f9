"""The deployment settings editor's markup (its state: ``deployment_settings.py``).

A dialog: the source and its fields, the branches, one card per environment
(promotion rules, gates and what it declares), and the whole document as JSON
under "Advanced".
"""

from __future__ import annotations

from typing import Any

import reflex as rx

from envhub.ui.components.common import error_callout, form_field
from envhub.ui.pages.deployment_settings import KINDS, ROLES
from envhub.ui.pages.deployment_settings import DeploymentSettingsState as S

_CODE = {"font_family": "var(--code-font-family)"}


def _src_input(field: str, placeholder: str = "", **props: Any) -> rx.Component:
    return rx.input(
        value=S.src.get(field, ""),
        on_change=lambda value: S.set_src(field, value),
        placeholder=placeholder,
        width="100%",
        id=f"deploy-{field.replace('_', '-')}",
        **props,
    )


def _src_field(label: str, field: str, control: rx.Component, help_text: str = "") -> rx.Component:
    return form_field(label, control, error=S.src_errors.get(field, ""), help_text=help_text)


def _source() -> rx.Component:
    kind = S.src.get("kind", "command")
    return rx.vstack(
        rx.grid(
            _src_field(
                "Source",
                "kind",
                rx.select(
                    KINDS,
                    value=kind,
                    on_change=lambda value: S.set_src("kind", value),
                    width="100%",
                    id="deploy-kind",
                ),
                "command: the embedded runtime runs the project's command; "
                "manifests, helm and image need Kubernetes.",
            ),
            _src_field(
                "Releases come from",
                "release_on",
                rx.select(
                    ["push", "api"],
                    value=S.src.get("release_on", "push"),
                    on_change=lambda value: S.set_src("release_on", value),
                    width="100%",
                    id="deploy-release-on",
                ),
                "push: GitHub pushes to the branches below. api: only CI calls (with image digests).",
            ),
            columns=rx.breakpoints(initial="1", sm="2"),
            spacing="3",
            width="100%",
        ),
        rx.cond(
            kind == "manifests",
            _src_field(
                "Manifests path",
                "path",
                _src_input("path", "deploy/k8s", **_CODE),
                "A file or folder of YAML in the repository.",
            ),
        ),
        rx.cond(
            kind == "helm",
            _src_field(
                "Chart path",
                "path",
                _src_input("path", "deploy/chart", **_CODE),
                "The chart's folder in the repository; leave it empty for a chart from a repository.",
            ),
        ),
        rx.cond(
            kind == "helm",
            rx.vstack(
                rx.grid(
                    _src_field(
                        "Chart reference",
                        "chart",
                        _src_input("chart", "oci://ghcr.io/acme/charts/shop", **_CODE),
                    ),
                    _src_field("Chart name", "chart_name", _src_input("chart_name", "shop", **_CODE)),
                    _src_field("Chart version", "version", _src_input("version", "1.4.2", **_CODE)),
                    columns=rx.breakpoints(initial="1", sm="3"),
                    spacing="3",
                    width="100%",
                ),
                _src_field(
                    "Values files",
                    "values_files",
                    rx.text_area(
                        value=S.src.get("values_files", ""),
                        on_change=lambda value: S.set_src("values_files", value),
                        placeholder="deploy/values.yaml",
                        rows="2",
                        width="100%",
                        id="deploy-values-files",
                        **_CODE,
                    ),
                    "One path in the repository per line.",
                ),
                width="100%",
                spacing="3",
            ),
        ),
        rx.grid(
            _src_field(
                "Deploy branches", "branches", _src_input("branches", "main", **_CODE), "Comma-separated."
            ),
            _src_field(
                "Release branches",
                "release_branches",
                _src_input("release_branches", "release/*", **_CODE),
                "Glob patterns, comma-separated.",
            ),
            columns=rx.breakpoints(initial="1", sm="2"),
            spacing="3",
            width="100%",
        ),
        spacing="3",
        width="100%",
    )


def _env_label(text: str, target: rx.Var) -> rx.Component:
    return rx.text(rx.el.label(text, html_for=target), size="2", weight="medium")


def _env_error(env: rx.Var, key: str) -> rx.Component:
    message = env[f"err_{key}"]
    return rx.cond(
        message != "",
        rx.hstack(
            rx.icon("circle-alert", size=13, color=rx.color("red", 10), flex_shrink="0", margin_top="2px"),
            rx.text(message, size="1", color=rx.color("red", 11), class_name="field-error"),
            spacing="1",
            align="start",
        ),
    )


def _env_id(index: rx.Var, key: str) -> rx.Var:
    return "deploy-env-" + index.to_string() + "-" + key  # type: ignore[operator, return-value]


def _env_field(
    label: str, env: rx.Var, index: rx.Var, key: str, control: rx.Component, help_text: str = ""
) -> rx.Component:
    return rx.vstack(
        _env_label(label, _env_id(index, key)),
        control,
        _env_error(env, key),
        *([rx.text(help_text, size="1", color_scheme="gray")] if help_text else []),
        spacing="1",
        width="100%",
    )


def _env_input(env: rx.Var, index: rx.Var, key: str, placeholder: str = "", **props: Any) -> rx.Component:
    return rx.input(
        value=env[key],
        on_change=lambda value: S.set_env(index, key, value),
        placeholder=placeholder,
        width="100%",
        id=_env_id(index, key),
        **props,
    )


def _env_switch(label: str, env: rx.Var, index: rx.Var, key: str) -> rx.Component:
    return rx.hstack(
        rx.switch(
            checked=env[key] == "true",
            on_change=lambda value: S.set_env(index, key, value),
            id=_env_id(index, key),
        ),
        _env_label(label, _env_id(index, key)),
        align="center",
        spacing="2",
    )


def _env_lines(env: rx.Var, index: rx.Var, key: str, placeholder: str) -> rx.Component:
    return rx.text_area(
        value=env[key],
        on_change=lambda value: S.set_env(index, key, value),
        placeholder=placeholder,
        rows="3",
        width="100%",
        id=_env_id(index, key),
        **_CODE,
    )


def _environment(env: rx.Var, index: rx.Var) -> rx.Component:
    two = rx.breakpoints(initial="1", sm="2")
    return rx.card(
        rx.vstack(
            rx.hstack(
                rx.icon("rocket", size=16, color=rx.color("gray", 10)),
                rx.text(env["name"], weight="bold", size="3"),
                rx.spacer(),
                rx.icon_button(
                    rx.icon("trash-2", size=14),
                    on_click=S.remove_environment(index),
                    variant="ghost",
                    color_scheme="gray",
                    size="1",
                    aria_label="Remove " + env["name"],  # type: ignore[operator]
                    type="button",
                ),
                align="center",
                spacing="2",
                width="100%",
            ),
            rx.grid(
                _env_field("Name", env, index, "name", _env_input(env, index, "name", **_CODE)),
                _env_field(
                    "Promoted from",
                    env,
                    index,
                    "promote_from",
                    rx.select(
                        S.env_sources,
                        value=env["promote_from"],
                        on_change=lambda value: S.set_env(index, "promote_from", value),
                        width="100%",
                        id=_env_id(index, "promote_from"),
                    ),
                ),
                _env_field(
                    "Approvals needed",
                    env,
                    index,
                    "approvals",
                    _env_input(env, index, "approvals", "0", inputmode="numeric"),
                ),
                _env_field(
                    "Approver role",
                    env,
                    index,
                    "approver_role",
                    rx.select(
                        ROLES,
                        value=env["approver_role"],
                        on_change=lambda value: S.set_env(index, "approver_role", value),
                        width="100%",
                        id=_env_id(index, "approver_role"),
                    ),
                ),
                _env_field(
                    "Soak (minutes)",
                    env,
                    index,
                    "soak",
                    _env_input(env, index, "soak", "none", inputmode="numeric"),
                    "How long the source environment must have run it, ready.",
                ),
                _env_field(
                    "Health URL",
                    env,
                    index,
                    "health_url",
                    _env_input(env, index, "health_url", "https://status.example.com/ok", **_CODE),
                    "Must answer 2xx or 3xx.",
                ),
                columns=two,
                spacing="3",
                width="100%",
            ),
            rx.hstack(
                _env_switch("GitHub checks green", env, index, "github_checks"),
                _env_switch("Roll back on failure", env, index, "auto_rollback"),
                _env_switch("Deploy window", env, index, "window"),
                spacing="5",
                wrap="wrap",
            ),
            rx.cond(
                env["window"] == "true",
                rx.vstack(
                    rx.grid(
                        _env_field(
                            "Days",
                            env,
                            index,
                            "days",
                            _env_input(env, index, "days", "mon,tue,wed,thu,fri", **_CODE),
                        ),
                        _env_field(
                            "From", env, index, "start", _env_input(env, index, "start", "09:00", **_CODE)
                        ),
                        _env_field(
                            "Until", env, index, "end", _env_input(env, index, "end", "17:00", **_CODE)
                        ),
                        _env_field(
                            "Time zone",
                            env,
                            index,
                            "timezone",
                            _env_input(env, index, "timezone", "UTC", **_CODE),
                        ),
                        columns=rx.breakpoints(initial="2", sm="4"),
                        spacing="3",
                        width="100%",
                    ),
                    _env_error(env, "window"),
                    width="100%",
                    spacing="1",
                ),
            ),
            rx.grid(
                _env_field(
                    "Replicas",
                    env,
                    index,
                    "replicas",
                    _env_lines(env, index, "replicas", "web=3"),
                    "One WORKLOAD=COUNT per line.",
                ),
                _env_field(
                    "Environment variables",
                    env,
                    index,
                    "env",
                    _env_lines(env, index, "env", "STAGE=production"),
                    "One KEY=VALUE per line, for every container.",
                ),
                columns=two,
                spacing="3",
                width="100%",
            ),
            spacing="3",
            width="100%",
        ),
        width="100%",
        class_name="deploy-env-form",
        data_name=env["name"],
    )


def _form() -> rx.Component:
    return rx.vstack(
        rx.heading("Source and branches", size="3", weight="medium"),
        _source(),
        rx.separator(size="4"),
        rx.hstack(
            rx.heading("Environments", size="3", weight="medium"),
            rx.spacer(),
            rx.button(
                rx.icon("plus", size=14),
                "Add environment",
                on_click=S.add_environment,
                variant="soft",
                size="1",
                type="button",
                id="deploy-add-environment",
            ),
            align="center",
            width="100%",
        ),
        rx.foreach(S.envs, _environment),
        spacing="3",
        width="100%",
    )


def _advanced() -> rx.Component:
    return form_field(
        "Settings (JSON)",
        rx.text_area(
            value=S.json_text,
            on_change=S.set_json,
            rows="22",
            width="100%",
            id="deploy-json",
            spellcheck=False,
            **_CODE,
            font_size="12px",
        ),
        help_text="The whole document, as the REST API takes it: Helm values and hosts are set here.",
    )


def settings_dialog() -> rx.Component:
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title(rx.cond(S.configured, "Deployment settings", "Set up staging and production")),
            rx.dialog.description(
                "A merge renders the source once, for every environment: "
                "they differ only in what each declares.",
                size="2",
                color_scheme="gray",
                margin_bottom="12px",
            ),
            rx.vstack(
                rx.cond(S.advanced, _advanced(), _form()),
                error_callout(S.error, id="deploy-settings-error"),
                rx.hstack(
                    rx.button(
                        rx.icon("braces", size=14),
                        rx.cond(S.advanced, "Back to the form", "Advanced (JSON)"),
                        on_click=S.toggle_advanced,
                        variant="ghost",
                        color_scheme="gray",
                        type="button",
                        id="deploy-advanced",
                    ),
                    rx.spacer(),
                    rx.button("Cancel", variant="soft", color_scheme="gray", type="button", on_click=S.close),
                    rx.button(
                        rx.cond(S.saving, rx.spinner(size="2"), rx.icon("save", size=16)),
                        "Save settings",
                        on_click=S.save,
                        disabled=S.saving,
                        id="deploy-save",
                    ),
                    align="center",
                    spacing="2",
                    width="100%",
                    padding_top="8px",
                ),
                spacing="3",
                width="100%",
            ),
            max_width="860px",
        ),
        open=S.open,
        on_open_change=lambda open_: S.close(),
    )
