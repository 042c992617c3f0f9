"""The environment page's Services panel: its managed databases, caches and buckets.

One row per service the project declares: what it is, its state (or why the
environment's own workloads made it unnecessary), the backend holding it, the
names of the variables its workloads receive (never the values), and a
button that rotates its credential.
"""

from __future__ import annotations

from typing import Any

import reflex as rx

from envhub.ui.components.common import section

_TONES = {"ready": "green", "failed": "red", "skipped": "gray", "pending": "gray", "provisioning": "amber"}
_ICONS = {"postgres": "database", "redis": "zap", "bucket": "archive"}


def _state_badge(row: rx.Var) -> rx.Component:
    tone = rx.match(row["state"], *_TONES.items(), "gray")
    return rx.badge(row["state_label"], color_scheme=tone, variant="soft", radius="full", size="1")


def _row(row: rx.Var, state: Any) -> rx.Component:
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
        spacing="1",
        width="100%",
        padding="10px 12px",
        border_top=f"1px solid {rx.color('gray', 4)}",
        class_name="managed-service",
        data_state=row["state"],
        data_service=row["name"],
    )


def managed_services_panel(state: Any) -> rx.Component:
    """Shown only when the project declares services."""
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
            rx.vstack(rx.foreach(state.managed, lambda row: _row(row, state)), spacing="0", width="100%"),
            icon="database",
            id="managed-services",
        ),
    )
