"""The project page's "Defaults for new environments" and "Environment URLs" cards.

It takes the page's state class so the markup stays here and the state stays
with the page (``ui/pages/project.py``).
"""

from __future__ import annotations

from typing import Any

import reflex as rx

from envhub.ui.components.common import form_field, mono, section, stat, stat_grid
from envhub.ui.components.project_form import (
    DEVCONTAINER_HELP,
    URL_ACCESS_FIELD,
    URL_ACCESS_HELP,
    url_access_select,
)
from envhub.ui.components.sleep_controls import idle_setting


def _service_row(service: rx.Var) -> rx.Component:
    return rx.table.row(
        rx.table.row_header_cell(rx.code(service["name"], variant="ghost", size="2", weight="medium")),
        rx.table.cell(mono(service["image"])),
        rx.table.cell(rx.text(rx.cond(service["ports"] != "", service["ports"], "—"), size="2")),
        rx.table.cell(rx.text(service["replicas"], size="2")),
        align="center",
        class_name="service-row",
    )


def workloads_defaults(S: Any) -> rx.Component:
    """Container services, raw manifests and egress: only used by image-based runtimes."""
    header = S.header
    services = rx.cond(
        S.services.length() > 0,
        rx.box(
            rx.table.root(
                rx.table.header(
                    rx.table.row(
                        *[rx.table.column_header_cell(h) for h in ("Service", "Image", "Ports", "Replicas")]
                    )
                ),
                rx.table.body(rx.foreach(S.services, _service_row)),
                variant="ghost",
                size="1",
                width="100%",
                id="defaults-services",
            ),
            width="100%",
            overflow_x="auto",
        ),
    )
    extras = rx.hstack(
        rx.cond(
            header["manifests"] != "",
            rx.hstack(
                rx.icon("file-code", size=14, color=rx.color("gray", 10)),
                rx.text("Raw manifests: ", header["manifests"], size="2", id="defaults-manifests"),
                align="center",
                spacing="1",
            ),
        ),
        rx.cond(
            header["egress"] != "",
            rx.hstack(
                rx.icon("shield-check", size=14, color=rx.color("gray", 10)),
                rx.text("Egress allowed to ", header["egress"], size="2", id="defaults-egress"),
                align="center",
                spacing="1",
            ),
        ),
        spacing="5",
        wrap="wrap",
    )
    return rx.cond(
        (S.services.length() > 0) | (header["manifests"] != "") | (header["egress"] != ""),
        rx.vstack(
            rx.separator(size="4"),
            rx.hstack(
                rx.text("Container workloads", size="2", weight="medium"),
                rx.badge("Kubernetes runtime", variant="soft", color_scheme="gray", size="1"),
                align="center",
                spacing="2",
            ),
            services,
            extras,
            spacing="3",
            width="100%",
        ),
    )


def project_defaults(S: Any) -> rx.Component:
    header = S.header
    muted = {"size": "2", "color_scheme": "gray"}
    return section(
        "Defaults for new environments",
        stat_grid(
            stat("Command", mono(header["command"])),
            stat(
                "Repository",
                rx.cond(
                    header["repo"] != "", mono(header["repo"]), rx.text("none (empty workspace)", **muted)
                ),
            ),
            stat(
                "Git ref",
                rx.cond(header["ref"] != "", mono(header["ref"]), rx.text("default branch", **muted)),
            ),
            stat("Health check", mono(header["health_path"])),
        ),
        workloads_defaults(S),
        devcontainer_setting(S),
        idle_setting(S),
        icon="settings-2",
    )


def devcontainer_setting(S: Any) -> rx.Component:
    """Which dev container configuration of the repository new deploys read; changed here."""
    return rx.form(
        rx.hstack(
            rx.box(
                form_field(
                    "Dev container configuration",
                    rx.input(
                        name="devcontainer",
                        id="project-devcontainer-setting",
                        default_value=S.header["devcontainer"],
                        key=S.header["devcontainer"],
                        placeholder="default",
                        width="100%",
                    ),
                    help_text=DEVCONTAINER_HELP,
                    error=S.devcontainer_error,
                ),
                flex="1",
            ),
            rx.button(
                "Save",
                type="submit",
                variant="soft",
                id="save-devcontainer",
                aria_label="Save dev container",
            ),
            align="end",
            spacing="3",
            width="100%",
        ),
        on_submit=S.set_devcontainer,
        reset_on_submit=False,
        width="100%",
        max_width="640px",
        id="devcontainer-setting",
    )


def url_access_setting(S: Any) -> rx.Component:
    """Who can open the project's environment URLs: shown, and changed here (all its environments)."""
    return section(
        "Environment URLs",
        rx.box(
            form_field(
                URL_ACCESS_FIELD,
                url_access_select(S.header["url_access"], S.set_url_access, id="project-url-access"),
                help_text=URL_ACCESS_HELP + " It holds for all of the project's environments.",
            ),
            max_width="520px",
            width="100%",
            id="url-access-setting",
        ),
        icon="lock",
    )
