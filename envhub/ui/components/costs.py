"""The environment page's "Usage and cost" panel: hours running and asleep this month, CPU and
memory hours of what it reserves, and the estimated cost when the operator set prices."""

from __future__ import annotations

from typing import Any

import reflex as rx

from envhub.services.costs import EnvironmentCostView

EMPTY_COSTS: dict[str, str] = {"summary": "", "reserved": "", "since": "", "cost": "", "note": ""}


def costs_row(view: EnvironmentCostView) -> dict[str, str]:
    """The panel's strings from the service's view (it computes every figure)."""
    figures = view["figures"]
    return {
        "summary": figures["summary"],
        "reserved": view["reserved"],
        "since": view["start"][:10],
        "cost": "" if figures["cost"] is None else f"{figures['cost']:.2f} {figures['currency']}",
        "note": ""
        if view["priced"]
        else "No prices are set: hours only (ENVHUB_PRICE_CPU_HOUR, ENVHUB_PRICE_MEMORY_GIB_HOUR).",
    }


def costs_panel(S: Any) -> rx.Component:
    spent = S.costs
    muted = {"size": "2", "color_scheme": "gray"}
    return rx.card(
        rx.vstack(
            rx.hstack(
                rx.icon("receipt", size=16, color=rx.color("gray", 10)),
                rx.heading("Usage and cost", size="3", weight="medium"),
                rx.spacer(),
                rx.cond(spent["cost"] != "", rx.badge(spent["cost"], size="2", id="cost-estimate")),
                align="center",
                spacing="2",
                width="100%",
            ),
            rx.text(spent["summary"], size="2", id="usage-cost-summary"),
            rx.text(
                "Since ",
                spent["since"],
                " (this month, UTC); while running it reserves ",
                spent["reserved"],
                ".",
                **muted,
            ),
            rx.cond(spent["note"] != "", rx.text(spent["note"], **muted)),
            spacing="2",
            width="100%",
        ),
        width="100%",
        size="2",
        id="usage-cost",
    )
