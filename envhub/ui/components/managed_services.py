"""The environment page's Services panel: its managed databases, caches and buckets.

One row per service the project declares: what it is, its state (or why the
environment's own workloads made it unnecessary), the backend holding it, the
names of the variables its workloads receive (never the values), and a
button that rotates its credential.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import reflex as rx

from envhub.ui.components.common import section

_TONES = {"ready": "green", "failed": "red", "skipped": "gray", "pending": "gray", "provisioning": "amber"}
_ICONS = {"postgres": "database", "redis": "zap", "bucket": "archive"}


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
    )


def declared_services_panel(state: Any) -> rx.Component:
    """The project's managed services, added and removed here (its ready environments follow)."""
    form = rx.form(
        rx.flex(
            rx.input(
                placeholder="name (db)",
                name="service-name",
                id="service-name",
                aria_label="Service name",
                width="160px",
                required=True,
            ),
            rx.select.root(
                rx.select.trigger(aria_label="Service kind", id="service-kind"),
                rx.select.content(
                    rx.select.item("PostgreSQL", value="postgres"),
                    rx.select.item("Redis", value="redis"),
                    rx.select.item("S3 bucket", value="bucket"),
                ),
                default_value="postgres",
                name="service-kind",
            ),
            rx.button(rx.icon("plus", size=16), "Add service", type="submit", id="add-service"),
            gap="8px",
            wrap="wrap",
            align="center",
        ),
        on_submit=state.add_service,
        reset_on_submit=True,
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
        icon="database",
        id="managed-services-setting",
    )
