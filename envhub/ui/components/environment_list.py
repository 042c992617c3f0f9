"""The Environments page's pieces: phase chips, the filter bar and the table.

They take the page's state class so the markup stays here and the handlers stay
with the state (``ui/pages/environments.py``).
"""

from __future__ import annotations

from typing import Any

import reflex as rx

from envhub.ui.components.badges import kind_badge, phase_badge, trigger_badge
from envhub.ui.components.common import field_label, pager, relative_time
from envhub.ui.components.environments import live_marker, public_url

ANY = "all"  # a select's "no filter" item (Radix items cannot have an empty value)

# (query key, label, what "any" reads as, the state's option list)
FILTERS: list[tuple[str, str, str, str]] = [
    ("project", "Project", "All projects", "project_options"),
    ("team", "Team", "All teams", "team_options"),
    ("phase", "Phase", "Any phase", "phase_options"),
    ("kind", "Kind", "Any kind", "kind_options"),
    ("trigger", "Trigger", "Any trigger", "trigger_options"),
    ("creator", "Created by", "Anyone", "creator_options"),
]


def phase_chips(S: Any) -> rx.Component:
    """How many environments are in each phase; a chip filters by its phase (again: all phases)."""

    def chip(phase: rx.Var, label: rx.Var, count: rx.Var, dot: rx.Component, active: rx.Var) -> rx.Component:
        return rx.button(
            dot,
            rx.text(label, size="2"),
            rx.text(count, size="2", weight="bold"),
            on_click=S.pick_phase(phase),
            variant=rx.cond(active, "surface", "soft"),
            color_scheme="gray",
            radius="full",
            size="2",
            aria_pressed=rx.cond(active, "true", "false"),
            class_name="phase-chip",
            data_phase=rx.cond(phase == "", "all", phase),
        )

    def one_phase(count: rx.Var) -> rx.Component:
        dot = rx.box(width="8px", height="8px", border_radius="50%", background=rx.color(count["tone"], 9))
        active = S.filters.get("phase", "") == count["phase"]
        return chip(count["phase"], count["phase"], count["count"], dot, active)

    every = chip(
        rx.Var.create(""),
        rx.Var.create("all"),
        S.phase_total,
        rx.icon("layers", size=14, color=rx.color("gray", 10)),
        S.filters.get("phase", "") == "",
    )
    return rx.hstack(
        every,
        rx.foreach(S.phase_counts, one_phase),
        spacing="2",
        wrap="wrap",
        id="phase-chips",
    )


def _filter_select(S: Any, key: str, label: str, any_label: str, options: str) -> rx.Component:
    return rx.vstack(
        field_label(label, html_for=f"filter-{key}"),
        rx.select.root(
            rx.select.trigger(id=f"filter-{key}", width="100%"),
            rx.select.content(
                rx.select.item(any_label, value=ANY),
                rx.select.separator(),
                rx.foreach(
                    getattr(S, options), lambda option: rx.select.item(option["label"], value=option["value"])
                ),
                position="popper",
            ),
            value=S.filters.get(key, ANY),
            on_change=lambda value: S.set_filter(key, value),
            size="2",
        ),
        spacing="1",
        width="100%",
        min_width="0",
    )


def filter_bar(S: Any) -> rx.Component:
    search = rx.vstack(
        field_label("Search", html_for="environment-search"),
        rx.input(
            rx.input.slot(rx.icon("search", size=16)),
            placeholder="Name, project or team (e.g. shop/pr-12)…",
            value=S.search,
            on_change=S.set_search,
            debounce_timeout=300,
            width="100%",
            id="environment-search",
            name="q",
            type="search",
        ),
        spacing="1",
        width="100%",
        max_width="420px",
    )
    return rx.card(
        rx.vstack(
            rx.hstack(
                search,
                rx.spacer(),
                rx.cond(
                    S.filtering,
                    rx.button(
                        rx.icon("x", size=14),
                        "Clear filters",
                        on_click=S.clear_filters,
                        variant="soft",
                        color_scheme="gray",
                        id="clear-filters",
                    ),
                ),
                align="end",
                spacing="3",
                width="100%",
            ),
            rx.grid(
                *[_filter_select(S, *spec) for spec in FILTERS],
                columns=rx.breakpoints(initial="1", sm="2", md="3", lg="6"),
                gap="12px",
                width="100%",
            ),
            spacing="3",
            width="100%",
        ),
        width="100%",
        id="environment-filters",
    )


def _row(row: rx.Var) -> rx.Component:
    return rx.table.row(
        rx.table.row_header_cell(
            rx.vstack(
                rx.link(
                    row["name"],
                    href=row["href"],
                    weight="medium",
                    class_name="env-link",
                    white_space="nowrap",
                ),
                rx.hstack(
                    rx.text(row["team"], size="1", color_scheme="gray"),
                    rx.text("/", size="1", color=rx.color("gray", 8)),
                    rx.link(
                        row["project"],
                        href="/projects/" + row["project_id"].to(str),
                        size="1",
                        color_scheme="gray",
                        underline="hover",
                        class_name="env-project",
                    ),
                    spacing="1",
                    align="center",
                ),
                spacing="0",
            )
        ),
        rx.table.cell(
            rx.tooltip(rx.box(phase_badge(row["phase"]), width="fit-content"), content=row["message"]),
        ),
        rx.table.cell(kind_badge(row["kind"])),
        rx.table.cell(trigger_badge(row["trigger"])),
        rx.table.cell(public_url(row["url"])),
        rx.table.cell(
            rx.hstack(
                rx.icon("user", size=13, color=rx.color("gray", 9)),
                rx.text(row["creator"], size="2", white_space="nowrap"),
                spacing="1",
                align="center",
            )
        ),
        rx.table.cell(relative_time(row["age"], row["age_stamp"])),
        align="center",
        class_name="env-row",
        data_phase=row["phase"],
        data_name=row["name"],
        data_project=row["project"],
    )


def listing_table(S: Any) -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.hstack(
                rx.icon("boxes", size=16, color=rx.color("gray", 10)),
                rx.heading(
                    rx.cond(S.filtering, "Matching environments", "All environments"),
                    size="3",
                    weight="medium",
                ),
                rx.badge(
                    S.total, variant="soft", color_scheme="gray", radius="full", id="environments-total"
                ),
                rx.spacer(),
                live_marker(),
                align="center",
                spacing="2",
                width="100%",
            ),
            rx.box(
                rx.table.root(
                    rx.table.header(
                        rx.table.row(
                            rx.table.column_header_cell("Environment"),
                            rx.table.column_header_cell("Phase"),
                            rx.table.column_header_cell("Kind"),
                            rx.table.column_header_cell("Trigger"),
                            rx.table.column_header_cell("Public URL"),
                            rx.table.column_header_cell("Created by"),
                            rx.table.column_header_cell("Age"),
                        )
                    ),
                    rx.table.body(rx.foreach(S.rows, _row)),
                    variant="ghost",
                    size="2",
                    width="100%",
                    id="all-environments-table",
                ),
                width="100%",
                overflow_x="auto",
            ),
            pager(
                S.page_label,
                has_prev=S.has_prev,
                has_next=S.next_cursor != "",
                on_prev=S.prev_page,
                on_next=S.next_page,
            ),
            spacing="3",
            width="100%",
        ),
        width="100%",
    )
