"""The environment page's Usage panel: CPU and memory per container over the last minutes.

One small chart per container (CPU in millicores on the left axis, memory in
MiB on the right), from ``services/usage.py``'s readings, with the newest
figures and the container's requests and limits beside it. When the runtime
cannot measure, the panel says why instead of drawing zeros.
"""

from __future__ import annotations

from typing import Any

import reflex as rx

from envhub.ui.components.common import section

CPU_COLOR = "var(--accent-9)"
MEMORY_COLOR = "var(--amber-9)"


def _chart(series: rx.Var) -> rx.Component:
    return rx.vstack(
        rx.text(series["label"], size="1", weight="medium"),
        rx.recharts.line_chart(
            rx.recharts.cartesian_grid(stroke_dasharray="3 3", vertical=False),
            rx.recharts.x_axis(data_key="time", tick_line=False, min_tick_gap=40, font_size=11),
            rx.recharts.y_axis(y_axis_id="cpu", width=48, font_size=11, unit="m"),
            rx.recharts.y_axis(y_axis_id="memory", orientation="right", width=56, font_size=11, unit="Mi"),
            rx.recharts.line(
                data_key="cpu",
                y_axis_id="cpu",
                name="CPU (millicores)",
                stroke=CPU_COLOR,
                dot=False,
                is_animation_active=False,
                type_="monotone",
            ),
            rx.recharts.line(
                data_key="memory",
                y_axis_id="memory",
                name="Memory (MiB)",
                stroke=MEMORY_COLOR,
                dot=False,
                is_animation_active=False,
                type_="monotone",
            ),
            rx.recharts.graphing_tooltip(),
            rx.recharts.legend(icon_size=10, height=24),
            data=series["points"],
            width="100%",
            height=170,
        ),
        spacing="1",
        width="100%",
        class_name="usage-chart",
        data_label=series["label"],
    )


def _row(row: rx.Var) -> rx.Component:
    return rx.table.row(
        rx.table.cell(rx.code(row["container"], variant="ghost", size="1")),
        rx.table.cell(rx.text(row["pod"], size="1", color_scheme="gray")),
        rx.table.cell(rx.text(row["cpu"], size="1"), class_name="usage-cpu"),
        rx.table.cell(
            rx.text(
                row["memory"],
                rx.cond(
                    row["memory_peak"] != "",
                    rx.text.span(" · peak ", row["memory_peak"], color_scheme="gray"),
                ),
                size="1",
            ),
            class_name="usage-memory",
        ),
        rx.table.cell(rx.text(row["requests"], size="1", color_scheme="gray")),
        rx.table.cell(rx.text(row["limits"], size="1", color_scheme="gray")),
        class_name="usage-row",
    )


def usage_panel(S: Any) -> rx.Component:
    view = S.usage
    table = rx.table.root(
        rx.table.header(
            rx.table.row(
                *(
                    rx.table.column_header_cell(title)
                    for title in ("Container", "Pod", "CPU", "Memory", "Requests", "Limits")
                ),
            )
        ),
        rx.table.body(rx.foreach(view["rows"], _row)),
        size="1",
        width="100%",
        id="usage-table",
    )
    body = rx.cond(
        view["available"] & (view["rows"].length() > 0),
        rx.vstack(
            table,
            # Figures from a weaker source than the runtime's best say so where they are read.
            rx.cond(
                view["source_note"] != "",
                rx.text(view["source_note"], size="1", color_scheme="amber", id="usage-source-note"),
            ),
            rx.grid(
                rx.foreach(view["series"], _chart),
                columns=rx.breakpoints(initial="1", md="2"),
                gap="16px",
                width="100%",
            ),
            spacing="3",
            width="100%",
        ),
        rx.callout.root(
            rx.callout.icon(rx.icon("gauge", size=16)),
            rx.callout.text(view["note"]),
            color_scheme="gray",
            size="1",
            width="100%",
            id="usage-note",
        ),
    )
    source = rx.cond(
        view["source"] != "",
        rx.text("from ", view["source"], size="1", color_scheme="gray", id="usage-source"),
    )
    return section("CPU and memory", body, icon="gauge", actions=source, id="usage")
