"""The managed-services panels: the environment page's Services, the project page's declarations.

On the environment page, one row per service the project declares: what it
is, its state (or why the environment's own workloads made it unnecessary),
the backend holding it, the names of the variables its workloads receive
(never the values), and a button that rotates its credential. On the project
page, the declared services and a form that adds one: a kind envhub
provisions itself, or an entry of the operator's catalog with its parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import reflex as rx

from envhub.ui.components.common import error_callout, field_label, section

_TONES = {"ready": "green", "failed": "red", "skipped": "gray", "pending": "gray", "provisioning": "amber"}
_ICONS = {"postgres": "database", "redis": "zap", "bucket": "archive"}
# The kind menu's value for a catalog entry: ``catalog:rabbitmq``.
CATALOG_CHOICE = "catalog:"


def _state_badge(row: rx.Var) -> rx.Component:
    tone = rx.match(row["state"], *_TONES.items(), "gray")
    return rx.badge(row["state_label"], color_scheme=tone, variant="soft", radius="full", size="1")


Below = Callable[[rx.Var], rx.Component]


def _row(row: rx.Var, state: Any, below: Below | None) -> rx.Component:
    return rx.vstack(
        rx.hstack(
            rx.icon(rx.match(row["kind"], *_ICONS.items(), "box"), size=16, color=rx.color("gray", 10)),
            rx.code(row["name"], variant="ghost", size="2", weight="medium"),
            rx.text(row["kind_label"], size="2", color_scheme="gray"),
            _state_badge(row),
            rx.spacer(),
            rx.cond(
                row["credential_set"] != "",
                rx.text("credential set ", row["credential_set"], size="1", color_scheme="gray"),
            ),
            rx.cond(
                row["rotatable"] & state.can_redeploy,
                rx.button(
                    rx.cond(
                        state.busy == "rotate:" + row["name"],
                        rx.spinner(size="1"),
                        rx.icon("key-round", size=14),
                    ),
                    "Rotate credential",
                    size="1",
                    variant="soft",
                    on_click=state.rotate_credential(row["name"]),
                    disabled=state.busy != "",
                    aria_label="Rotate the credential of " + row["name"],
                ),
            ),
            align="center",
            spacing="2",
            width="100%",
            wrap="wrap",
        ),
        rx.cond(row["reason"] != "", rx.text(row["reason"], size="1", color_scheme="gray")),
        rx.hstack(
            rx.foreach(row["variables"], lambda name: rx.code(name, size="1", variant="soft")),
            rx.cond(row["backend"] != "", rx.text("on ", row["backend"], size="1", color_scheme="gray")),
            spacing="1",
            wrap="wrap",
            align="center",
        ),
        *([below(row)] if below is not None else []),
        spacing="1",
        width="100%",
        padding="10px 12px",
        border_top=f"1px solid {rx.color('gray', 4)}",
        class_name="managed-service",
        data_state=row["state"],
        data_service=row["name"],
    )


def managed_services_panel(state: Any, *, below: Below | None = None) -> rx.Component:
    """Shown only when the project declares services; ``below(row)`` adds to a service's row (its backups)."""
    return rx.cond(
        state.managed.length() > 0,
        section(
            "Services",
            rx.text(
                "Each environment gets its own instance. Workloads receive these variables; "
                "values are never shown, and rotating a credential redeploys the environment.",
                size="2",
                color_scheme="gray",
            ),
            rx.vstack(
                rx.foreach(state.managed, lambda row: _row(row, state, below)), spacing="0", width="100%"
            ),
            icon="database",
            id="managed-services",
        ),
    )


def _declared_row(item: rx.Var, state: Any) -> rx.Component:
    return rx.hstack(
        rx.icon(rx.match(item["kind"], *_ICONS.items(), "box"), size=16, color=rx.color("gray", 10)),
        rx.code(item["name"], variant="ghost", size="2", weight="medium"),
        rx.text(item["label"], size="2", color_scheme="gray"),
        rx.foreach(
            item["parameters"],
            lambda parameter: rx.text(
                parameter["name"],
                " ",
                rx.text.strong(parameter["value"]),
                size="1",
                color_scheme="gray",
                class_name="declared-parameter",
            ),
        ),
        rx.hstack(
            rx.foreach(item["variables"], lambda name: rx.code(name, size="1", variant="soft")),
            spacing="1",
            wrap="wrap",
        ),
        rx.spacer(),
        rx.icon_button(
            rx.icon("trash-2", size=14),
            size="1",
            variant="ghost",
            color_scheme="red",
            on_click=state.remove_service(item["name"]),
            aria_label="Remove service " + item["name"],
        ),
        align="center",
        spacing="2",
        width="100%",
        wrap="wrap",
        class_name="declared-service",
        data_service=item["name"],
    )


def _kind_select(state: Any) -> rx.Component:
    """The kinds envhub provisions itself, then the operator's catalog entries (when it has a catalog)."""
    return rx.select.root(
        rx.select.trigger(aria_label="Service kind", id="service-kind", min_width="180px"),
        rx.select.content(
            rx.select.item("PostgreSQL", value="postgres"),
            rx.select.item("Redis", value="redis"),
            rx.select.item("S3 bucket", value="bucket"),
            rx.cond(
                state.catalog.length() > 0,
                rx.fragment(
                    rx.select.separator(),
                    rx.foreach(
                        state.catalog,
                        lambda entry: rx.select.item(
                            entry["title"] + " (catalog)", value=CATALOG_CHOICE + entry["name"]
                        ),
                    ),
                ),
            ),
        ),
        value=state.service_kind,
        on_change=state.set_service_kind,
        name="service-kind",
    )


def _parameter_field(parameter: rx.Var, state: Any) -> rx.Component:
    """One parameter of the chosen entry: its name as the label, its description as help."""
    control = "service-parameter-" + parameter["name"]
    return rx.vstack(
        field_label(parameter["name"], html_for=control),
        rx.input(
            # A key per entry and parameter: choosing another entry starts from its defaults.
            key=state.service_kind + "/" + parameter["name"],
            default_value=parameter["default"],
            name="parameter-" + parameter["name"],
            id=control,
            aria_describedby=control + "-help",
            width="100%",
            style={"font_family": "var(--code-font-family)"},
        ),
        rx.cond(
            parameter["description"] != "",
            rx.text(parameter["description"], size="1", color_scheme="gray", id=control + "-help"),
        ),
        spacing="1",
        width="100%",
        class_name="service-parameter",
    )


def _add_button() -> rx.Component:
    return rx.button(rx.icon("plus", size=16), "Add service", type="submit", id="add-service")


def _catalog_details(state: Any) -> rx.Component:
    """What the chosen catalog entry is, the variables it gives, and its parameters to set."""
    entry = state.chosen_entry
    return rx.vstack(
        rx.cond(entry["description"] != "", rx.text(entry["description"], size="2")),
        rx.hstack(
            rx.text("Workloads receive", size="1", color_scheme="gray"),
            rx.foreach(entry["variables"], lambda name: rx.code(name, size="1", variant="soft")),
            spacing="1",
            wrap="wrap",
            align="center",
        ),
        rx.cond(
            state.runtime_name == "local",
            rx.text(
                "Catalog services run on a cluster runtime: on this envhub's local runtime, an "
                "environment's deploy fails saying so.",
                size="1",
                color_scheme="amber",
                id="catalog-local-note",
            ),
        ),
        rx.cond(
            entry["parameters"].length() > 0,
            rx.grid(
                rx.foreach(entry["parameters"], lambda parameter: _parameter_field(parameter, state)),
                columns=rx.breakpoints(initial="1", sm="2", lg="3"),
                gap="12px 16px",
                width="100%",
            ),
        ),
        _add_button(),
        spacing="3",
        width="100%",
        padding="12px",
        border=f"1px solid {rx.color('gray', 5)}",
        border_radius="var(--radius-3)",
        id="catalog-entry",
    )


def declared_services_panel(state: Any) -> rx.Component:
    """The project's managed services, added and removed here (its ready environments follow).

    With an operator's catalog, its entries join the kind menu; choosing one
    shows its parameters (prefilled with the defaults), and the Add button
    moves below them so the form reads in order.
    """
    chose_entry = state.chosen_entry["name"] != ""
    form = rx.form(
        rx.vstack(
            rx.flex(
                rx.input(
                    placeholder="name (db)",
                    name="service-name",
                    id="service-name",
                    aria_label="Service name",
                    width="160px",
                    required=True,
                ),
                _kind_select(state),
                rx.cond(chose_entry, rx.fragment(), _add_button()),
                gap="8px",
                wrap="wrap",
                align="center",
            ),
            rx.cond(chose_entry, _catalog_details(state)),
            spacing="3",
            width="100%",
        ),
        on_submit=state.add_service,
        key=state.service_form,  # a new key after an add empties the form; a refusal keeps it
        width="100%",
    )
    return section(
        "Managed services",
        rx.text(
            "Every environment gets its own instance, unless it runs one itself; its workloads receive "
            "these variables. Ready environments pick a change up within moments.",
            size="2",
            color_scheme="gray",
        ),
        rx.cond(
            state.header["backing"].length() > 0,
            rx.vstack(
                rx.foreach(state.header["backing"], lambda item: _declared_row(item, state)),
                spacing="2",
                width="100%",
                id="declared-services",
            ),
            rx.text("No managed services.", size="2", color_scheme="gray"),
        ),
        form,
        error_callout(state.service_error, id="service-error"),
        icon="database",
        id="managed-services-setting",
    )
