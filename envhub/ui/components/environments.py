"""The project page's environment table and its two dialogs.

They take the page's state class so the markup stays here and the handlers stay
with the state (``ui/pages/project.py``).
"""

from __future__ import annotations

from typing import Any

import reflex as rx

from envhub.ui.components.badges import kind_badge, phase_badge
from envhub.ui.components.common import dialog_actions, error_callout, form_field, pager, relative_time
from envhub.ui.components.environment_panels import typed_confirmation


def public_url(url: rx.Var) -> rx.Component:
    """An environment's public URL without its scheme, as a link; a dash when it does not serve."""
    return rx.cond(
        url != "",
        rx.link(
            rx.hstack(
                rx.text(
                    url.to(str).replace("http://", "").replace("https://", ""),
                    size="2",
                    max_width="240px",
                    style={"white_space": "nowrap", "overflow": "hidden", "text_overflow": "ellipsis"},
                ),
                rx.icon("external-link", size=13),
                spacing="1",
                align="center",
            ),
            href=url,
            is_external=True,
            class_name="env-url",
        ),
        rx.text("—", color_scheme="gray"),
    )


def live_marker() -> rx.Component:
    """The pulsing "Live" mark of a list that updates by itself."""
    return rx.hstack(
        rx.box(
            width="6px",
            height="6px",
            border_radius="50%",
            background=rx.color("green", 9),
            class_name="pulse",
        ),
        rx.text("Live", size="1", color_scheme="gray"),
        align="center",
        spacing="1",
    )


def _row(state: Any, row: rx.Var) -> rx.Component:
    busy = state.busy_row == row["name"]
    gone = (row["phase"] == "deleting") | (row["phase"] == "deleted")
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
                rx.text(row["message"], size="1", color_scheme="gray", truncate=True, max_width="280px"),
                spacing="0",
            )
        ),
        rx.table.cell(kind_badge(row["kind"])),
        rx.table.cell(phase_badge(row["phase"])),
        rx.table.cell(public_url(row["url"])),
        rx.table.cell(
            rx.hstack(
                rx.icon("user", size=13, color=rx.color("gray", 9)),
                rx.text(row["creator"], size="2"),
                spacing="1",
            )
        ),
        rx.table.cell(relative_time(row["age"], row["age_stamp"])),
        rx.table.cell(
            rx.hstack(
                rx.tooltip(
                    rx.icon_button(
                        rx.cond(busy, rx.spinner(size="1"), rx.icon("refresh-cw", size=14)),
                        on_click=state.redeploy(row["name"]),
                        disabled=busy | gone | (row["phase"] == "pending"),
                        variant="ghost",
                        color_scheme="gray",
                        size="1",
                        aria_label="Redeploy",
                        class_name="redeploy-env",
                    ),
                    content="Redeploy",
                ),
                rx.tooltip(
                    rx.icon_button(
                        rx.icon("trash-2", size=14),
                        on_click=state.ask_delete(row["name"]),
                        disabled=busy | gone,
                        variant="ghost",
                        color_scheme="red",
                        size="1",
                        aria_label="Delete",
                        class_name="delete-env",
                    ),
                    content="Delete",
                ),
                spacing="3",
                justify="end",
            )
        ),
        align="center",
        data_phase=row["phase"],
        data_name=row["name"],
        class_name="env-row",
    )


def environments_table(state: Any) -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.hstack(
                rx.icon("boxes", size=16, color=rx.color("gray", 10)),
                rx.heading("Environments", size="3", weight="medium"),
                rx.badge(state.total, variant="soft", color_scheme="gray", radius="full"),
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
                            rx.table.column_header_cell("Name"),
                            rx.table.column_header_cell("Kind"),
                            rx.table.column_header_cell("Phase"),
                            rx.table.column_header_cell("Public URL"),
                            rx.table.column_header_cell("Created by"),
                            rx.table.column_header_cell("Age"),
                            rx.table.column_header_cell(""),
                        )
                    ),
                    rx.table.body(rx.foreach(state.rows, lambda row: _row(state, row))),
                    variant="ghost",
                    size="2",
                    width="100%",
                    id="environments-table",
                ),
                width="100%",
                overflow_x="auto",
            ),
            pager(
                state.page_label,
                has_prev=state.offset > 0,
                has_next=state.has_next,
                on_prev=state.prev_page,
                on_next=state.next_page,
            ),
            spacing="3",
            width="100%",
        ),
        width="100%",
    )


def _opt_input(state: Any, field: str, placeholder: rx.Var[str] | str = "", **props: Any) -> rx.Component:
    return rx.input(
        value=state.opts.get(field, ""),
        on_change=lambda value: state.set_opt(field, value),
        placeholder=placeholder,
        id=f"env-{field}",
        width="100%",
        **props,
    )


def create_options_dialog(state: Any) -> rx.Component:
    errors = state.opt_errors
    header = state.header
    return rx.dialog.root(
        rx.dialog.trigger(
            rx.button(
                rx.icon("sliders-horizontal", size=16),
                "Create with options…",
                variant="soft",
                id="create-with-options",
            ),
        ),
        rx.dialog.content(
            rx.dialog.title("Create environment"),
            rx.dialog.description(
                "Anything left empty comes from the project's defaults.",
                size="2",
                color_scheme="gray",
                margin_bottom="16px",
            ),
            rx.vstack(
                rx.grid(
                    form_field(
                        "Name",
                        _opt_input(state, "name", auto_focus=True),
                        error=errors.get("name", ""),
                        required=True,
                    ),
                    form_field(
                        "Kind",
                        rx.select(
                            ["development", "deployment"],
                            value=state.opts.get("kind", "development"),
                            on_change=lambda value: state.set_opt("kind", value),
                            width="100%",
                            id="env-kind",
                        ),
                        error=errors.get("kind", ""),
                    ),
                    columns=rx.breakpoints(initial="1", sm="2"),
                    spacing="3",
                    width="100%",
                ),
                form_field(
                    "Git ref",
                    _opt_input(state, "ref", rx.cond(header["ref"] != "", header["ref"], "default branch")),
                    error=errors.get("ref", ""),
                ),
                form_field(
                    "Command",
                    _opt_input(state, "command", header["command"], font_family="var(--code-font-family)"),
                    error=errors.get("command", ""),
                    help_text="Overrides the project's command. It must serve HTTP on $PORT.",
                ),
                form_field(
                    "Environment variables",
                    rx.text_area(
                        value=state.opts.get("env", ""),
                        on_change=lambda value: state.set_opt("env", value),
                        placeholder="DEBUG=1\nGREETING=hello",
                        rows="4",
                        width="100%",
                        id="env-env",
                        font_family="var(--code-font-family)",
                    ),
                    error=errors.get("env", ""),
                    help_text="One KEY=VALUE per line. PORT is set by envhub.",
                ),
                error_callout(state.opt_error),
                dialog_actions(
                    rx.button(
                        rx.cond(state.creating, rx.spinner(size="2"), rx.icon("rocket", size=16)),
                        "Create",
                        on_click=state.create_with_options,
                        disabled=state.creating,
                        id="env-create-submit",
                    ),
                    padding_top="8px",
                ),
                spacing="3",
                width="100%",
            ),
            max_width="560px",
        ),
        open=state.options_open,
        on_open_change=state.open_options,
    )


def delete_dialog(state: Any) -> rx.Component:
    deployment = state.confirm_kind == "deployment"
    return rx.alert_dialog.root(
        rx.alert_dialog.content(
            rx.alert_dialog.title("Delete ", rx.code(state.confirm_name), "?"),
            rx.alert_dialog.description(
                rx.cond(
                    deployment,
                    "A deployment environment runs the team's real workloads: they stop, its releases end "
                    "and its URL stops answering. Only a team owner can delete it.",
                    "Its processes stop, its workspace is removed and its URL stops answering. "
                    "The audit trail is kept.",
                ),
                size="2",
            ),
            rx.cond(
                deployment, typed_confirmation(state.confirm_name, state.confirm_text, state.set_confirm_text)
            ),
            rx.hstack(
                rx.alert_dialog.cancel(rx.button("Cancel", variant="soft", color_scheme="gray")),
                rx.alert_dialog.action(
                    rx.button(
                        rx.icon("trash-2", size=16),
                        "Delete environment",
                        color_scheme="red",
                        on_click=state.confirm_delete(state.confirm_name),
                        disabled=deployment & (state.confirm_text != state.confirm_name),
                        id="confirm-delete",
                    )
                ),
                spacing="3",
                justify="end",
                margin_top="16px",
            ),
            max_width="440px",
        ),
        open=state.confirm_name != "",
        on_open_change=state.close_delete,
    )
