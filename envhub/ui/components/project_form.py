"""The "New project" dialog, with its optional container-workloads section.

It takes the page's state class so the markup stays here and the handlers stay
with the state (``ui/pages/projects.py``).
"""

from __future__ import annotations

from typing import Any

import reflex as rx

from envhub.domain.specs import DEFAULT_COMMAND
from envhub.domain.url_access import URL_ACCESS_LABELS
from envhub.ui.components.common import dialog_actions, error_callout, form_field
from envhub.ui.workload_defaults import MANIFESTS_EXAMPLE, SERVICES_EXAMPLE

_CODE = {"font_family": "var(--code-font-family)", "font_size": "12px"}


DEVCONTAINER_HELP = (
    "Leave empty to use .devcontainer/devcontainer.json or .devcontainer.json when the repository "
    "has one; a name picks .devcontainer/<name>/devcontainer.json."
)


def _input(S: Any, field: str, placeholder: str = "", **props: Any) -> rx.Component:
    return rx.input(
        value=S.form.get(field, ""),
        on_change=lambda value: S.set_field(field, value),
        placeholder=placeholder,
        name=field,
        id=f"project-{field.replace('_', '-')}",
        width="100%",
        **props,
    )


def _code_area(S: Any, field: str, placeholder: str, rows: str, **props: Any) -> rx.Component:
    return rx.text_area(
        value=S.form.get(field, ""),
        on_change=lambda value: S.set_field(field, value),
        placeholder=placeholder,
        name=field,
        id=f"project-{field.replace('_', '-')}",
        rows=rows,
        width="100%",
        spell_check=False,
        style={**_CODE, "& textarea": _CODE, "& textarea::placeholder": {"opacity": "0.75"}},
        **props,
    )


URL_ACCESS_FIELD = "Who can open environment URLs"
URL_ACCESS_HELP = (
    "With sign-in, envhub asks people to sign in before they reach an environment's URL, and lets "
    "through only those who may see the environment."
)


def url_access_select(value: Any, on_change: Any, id: str, **props: Any) -> rx.Component:
    """The choice of who may open a project's environment URLs (create dialog, project page)."""
    return rx.select.root(
        rx.select.trigger(id=id, width="100%"),
        rx.select.content(
            *[rx.select.item(label, value=access.value) for access, label in URL_ACCESS_LABELS.items()],
            position="popper",
        ),
        value=value,
        on_change=on_change,
        name="url_access",
        size="2",
        **props,
    )


def _workloads_toggle(S: Any) -> rx.Component:
    return rx.el.button(
        rx.hstack(
            rx.cond(
                S.workloads_open,
                rx.icon("chevron-down", size=16, color=rx.color("gray", 11)),
                rx.icon("chevron-right", size=16, color=rx.color("gray", 11)),
            ),
            rx.icon("container", size=16, color=rx.color("gray", 11)),
            rx.text("Container workloads (Kubernetes runtime)", size="2", weight="medium"),
            rx.text("optional", size="1", color_scheme="gray"),
            rx.spacer(),
            rx.cond(
                ~S.workloads_open & (S.workloads_summary != ""),
                rx.badge(S.workloads_summary, variant="soft", color_scheme="gray", size="1"),
            ),
            align="center",
            spacing="2",
            width="100%",
        ),
        type="button",
        on_click=S.toggle_workloads,
        aria_expanded=rx.cond(S.workloads_open, "true", "false"),
        aria_controls="project-workloads",
        id="toggle-workloads",
        style={
            "all": "unset",
            "box_sizing": "border-box",
            "width": "100%",
            "cursor": "pointer",
            "padding": "10px 12px",
            "border_radius": "var(--radius-3)",
            "&:hover": {"background": rx.color("gray", 3)},
            "&:focus-visible": {"outline": f"2px solid {rx.color('accent', 8)}"},
        },
    )


def _workloads_fields(S: Any) -> rx.Component:
    errors = S.errors
    egress = [
        ("Egress: CIDR blocks", "egress_cidrs", "10.20.0.0/16\n203.0.113.7/32"),
        ("Egress: namespaces", "egress_namespaces", "shared-db\nmonitoring"),
        ("Egress: services", "egress_services", "payments/api:8443\nsearch/opensearch"),
    ]
    return rx.vstack(
        rx.text(
            "Used when envhub runs environments on Kubernetes, instead of the command above. Leave "
            "everything empty to run the command only.",
            size="1",
            color_scheme="gray",
        ),
        form_field(
            "Services (YAML)",
            _code_area(S, "services", SERVICES_EXAMPLE, "10", on_blur=S.check_services),
            error=errors.get("services", ""),
            id="field-services",
            help_text="A list of {name, image, command, args, env, ports, resources, health, replicas}. "
            "The first service with a port gets the public URL.",
        ),
        form_field(
            "Kubernetes manifests (YAML)",
            _code_area(S, "manifests", MANIFESTS_EXAMPLE, "7"),
            error=errors.get("manifests", ""),
            id="field-manifests",
            help_text="Multi-document YAML, as for kubectl apply -f; applied in the environment's namespace.",
        ),
        rx.grid(
            *[
                form_field(
                    label,
                    _code_area(S, field, example, "3"),
                    error=errors.get(field, ""),
                    id=f"field-{field.replace('_', '-')}",
                )
                for label, field, example in egress
            ],
            columns=rx.breakpoints(initial="1", sm="3"),
            spacing="3",
            width="100%",
        ),
        rx.text(
            "Egress: where the environment may connect beyond DNS and its own namespace, one per line "
            "(services as namespace/service[:port]). Everything else is blocked.",
            size="1",
            color_scheme="gray",
        ),
        spacing="3",
        width="100%",
        padding="4px 12px 12px",
        id="project-workloads",
    )


def workloads_section(S: Any) -> rx.Component:
    return rx.box(
        _workloads_toggle(S),
        rx.cond(S.workloads_open, _workloads_fields(S)),
        width="100%",
        border=f"1px solid {rx.color('gray', 5)}",
        border_radius="var(--radius-3)",
    )


def create_dialog(S: Any) -> rx.Component:
    errors = S.errors
    return rx.dialog.root(
        rx.dialog.trigger(
            rx.button(rx.icon("plus", size=16), "New project", id="new-project", size="2"),
        ),
        rx.dialog.content(
            rx.dialog.title("New project"),
            rx.dialog.description(
                "A project holds the defaults every environment starts from.",
                size="2",
                color_scheme="gray",
                margin_bottom="16px",
            ),
            rx.form(
                rx.vstack(
                    rx.cond(
                        S.team_names.length() > 1,
                        form_field(
                            "Team",
                            rx.select(
                                S.team_names,
                                value=S.form.get("team", ""),
                                on_change=lambda value: S.set_field("team", value),
                                id="project-team",
                            ),
                            help_text="The team that owns the project; its members' roles apply.",
                        ),
                    ),
                    form_field(
                        "Name",
                        _input(S, "name", "my-app", auto_focus=True),
                        error=errors.get("name", ""),
                        help_text="Lower-case letters, digits and '-'; it becomes part of every URL.",
                        required=True,
                    ),
                    form_field(
                        "Description",
                        rx.text_area(
                            value=S.form.get("description", ""),
                            on_change=lambda value: S.set_field("description", value),
                            placeholder="What this app is",
                            id="project-description",
                            name="description",
                            rows="2",
                            width="100%",
                        ),
                        error=errors.get("description", ""),
                    ),
                    rx.grid(
                        form_field(
                            "Repository URL",
                            _input(S, "repo_url", "https://github.com/acme/shop.git"),
                            error=errors.get("repo_url", ""),
                            help_text="Optional. Without one, environments start from an empty folder.",
                        ),
                        form_field("Git ref", _input(S, "ref", "main"), error=errors.get("ref", "")),
                        columns=rx.breakpoints(initial="1", sm="2"),
                        spacing="3",
                        width="100%",
                    ),
                    form_field(
                        "Command",
                        _input(S, "command", DEFAULT_COMMAND, font_family="var(--code-font-family)"),
                        error=errors.get("command", ""),
                        help_text="Runs in the environment's workspace. It must serve HTTP on $PORT.",
                        required=True,
                    ),
                    form_field(
                        "Health check path",
                        _input(S, "health_path", "/"),
                        error=errors.get("health_path", ""),
                        help_text="The environment is ready once this path answers with a status below 500.",
                    ),
                    form_field(
                        "Dev container configuration",
                        _input(S, "devcontainer", "default"),
                        error=errors.get("devcontainer", ""),
                        help_text=DEVCONTAINER_HELP,
                    ),
                    form_field(
                        URL_ACCESS_FIELD,
                        url_access_select(
                            S.form.get("url_access", "public"),
                            lambda value: S.set_field("url_access", value),
                            id="project-url-access",
                        ),
                        error=errors.get("url_access", ""),
                        help_text=URL_ACCESS_HELP,
                    ),
                    workloads_section(S),
                    error_callout(S.form_error, id="project-form-error"),
                    dialog_actions(
                        rx.button(
                            rx.cond(S.creating, rx.spinner(size="2"), rx.icon("plus", size=16)),
                            "Create project",
                            type="submit",
                            disabled=S.creating,
                            id="create-project",
                        ),
                        padding_top="8px",
                    ),
                    spacing="3",
                    width="100%",
                ),
                on_submit=S.submit,
                reset_on_submit=False,
            ),
            max_width="600px",
        ),
        open=S.dialog_open,
        on_open_change=S.open_dialog,
    )
