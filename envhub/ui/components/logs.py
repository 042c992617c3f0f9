"""The logs panel: the environment's last lines of output, newest at the bottom."""

from __future__ import annotations

from typing import Any

import reflex as rx

from envhub.ui.components.common import section


def log_picker(S: Any) -> rx.Component:
    """Which container service to read, when the environment runs several."""
    return rx.hstack(
        rx.el.label(rx.text("Service", size="1", color_scheme="gray"), html_for="log-container"),
        rx.select(
            S.log_containers,
            value=rx.cond(S.log_container != "", S.log_container, S.log_containers[0]),
            on_change=S.pick_log_container,
            size="1",
            variant="surface",
            id="log-container",
        ),
        align="center",
        spacing="2",
    )


def logs_panel(
    lines: rx.Var[list[str]],
    *,
    live: rx.Var[bool],
    empty: rx.Var[str] | str = "No output yet.",
    picker: rx.Component | None = None,
) -> rx.Component:
    body = rx.cond(
        lines.length() > 0,
        # column-reverse around one inner box keeps the view pinned to the newest line.
        rx.box(
            rx.box(rx.foreach(lines, lambda line: rx.text(line, as_="div", class_name="log-line"))),
            id="logs",
            font_family="var(--code-font-family)",
            font_size="12px",
            line_height="1.55",
            white_space="pre-wrap",
            word_break="break-all",
            padding="12px 14px",
            border_radius="var(--radius-3)",
            background=rx.color("gray", 2),
            border=f"1px solid {rx.color('gray', 4)}",
            max_height="360px",
            overflow_y="auto",
            display="flex",
            flex_direction="column-reverse",
            width="100%",
        ),
        rx.text(empty, color_scheme="gray", size="2", id="logs-empty"),
    )
    badge = rx.cond(
        live,
        rx.badge(
            rx.box(
                width="6px", height="6px", border_radius="50%", background="currentColor", class_name="pulse"
            ),
            "live",
            color_scheme="green",
            variant="soft",
            radius="full",
        ),
    )
    actions = rx.hstack(*([picker] if picker is not None else []), badge, align="center", spacing="3")
    return section("Logs", body, icon="scroll-text", actions=actions)
