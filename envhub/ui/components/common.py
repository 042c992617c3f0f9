"""Small building blocks the pages share: cards, empty states, pagers, fields."""

from __future__ import annotations

from typing import Any

import reflex as rx

Text = str | rx.Var[str]


def section(
    title: Text, *children: rx.Component, icon: str = "", actions: rx.Component | None = None, **props: Any
) -> rx.Component:
    head = rx.hstack(
        *([rx.icon(icon, size=16, color=rx.color("gray", 10))] if icon else []),
        rx.heading(title, size="3", weight="medium"),
        rx.spacer(),
        *([actions] if actions is not None else []),
        align="center",
        spacing="2",
        width="100%",
    )
    return rx.card(rx.vstack(head, *children, spacing="3", width="100%"), width="100%", size="2", **props)


def empty_state(icon: str, title: Text, text: Text, *actions: rx.Component) -> rx.Component:
    return rx.center(
        rx.vstack(
            rx.center(
                rx.icon(icon, size=26, color=rx.color("accent", 11)),
                width="56px",
                height="56px",
                border_radius="50%",
                background=rx.color("accent", 3),
            ),
            rx.heading(title, size="4", weight="medium"),
            rx.text(text, color_scheme="gray", size="2", text_align="center", max_width="420px"),
            rx.hstack(*actions, spacing="2", padding_top="6px"),
            align="center",
            spacing="2",
        ),
        padding_y="48px",
        width="100%",
        border=f"1px dashed {rx.color('gray', 6)}",
        border_radius="var(--radius-4)",
    )


def not_found(what: str, back_href: str, back_label: str) -> rx.Component:
    return rx.center(
        rx.vstack(
            rx.center(
                rx.icon("search-x", size=28, color=rx.color("gray", 11)),
                width="64px",
                height="64px",
                border_radius="50%",
                background=rx.color("gray", 3),
            ),
            rx.heading(f"{what} not found", size="5", id="not-found"),
            rx.text(
                f"This {what.lower()} does not exist, was deleted, or you do not have access to it.",
                color_scheme="gray",
                text_align="center",
            ),
            rx.link(rx.button(rx.icon("arrow-left", size=16), back_label, variant="soft"), href=back_href),
            align="center",
            spacing="3",
        ),
        padding_y="80px",
        width="100%",
    )


def error_callout(error: rx.Var, **props: Any) -> rx.Component:
    """An :class:`~envhub.ui.feedback.ErrorView` var as a callout; hidden when empty."""
    return rx.cond(
        error["code"] != "",
        rx.callout.root(
            rx.callout.icon(rx.icon("circle-alert", size=16)),
            rx.vstack(
                rx.hstack(
                    rx.code(error["code"], variant="ghost", weight="bold"),
                    rx.text(error["message"], size="2"),
                    spacing="2",
                    wrap="wrap",
                ),
                rx.cond(error["hint"] != "", rx.text(error["hint"], size="2", color_scheme="gray")),
                spacing="1",
            ),
            color_scheme="red",
            role="alert",
            width="100%",
            **props,
        ),
    )


def pager(
    label: rx.Var[str], *, has_prev: rx.Var[bool], has_next: rx.Var[bool], on_prev, on_next
) -> rx.Component:
    return rx.hstack(
        rx.text(label, size="1", color_scheme="gray"),
        rx.spacer(),
        rx.icon_button(
            rx.icon("chevron-left", size=16),
            on_click=on_prev,
            disabled=~has_prev,
            variant="soft",
            color_scheme="gray",
            size="1",
            aria_label="Previous page",
        ),
        rx.icon_button(
            rx.icon("chevron-right", size=16),
            on_click=on_next,
            disabled=~has_next,
            variant="soft",
            color_scheme="gray",
            size="1",
            aria_label="Next page",
        ),
        align="center",
        spacing="2",
        width="100%",
    )


def dialog_actions(submit: rx.Component, **props: Any) -> rx.Component:
    """A dialog's footer: Cancel (closes it), then ``submit``, on the right."""
    return rx.hstack(
        rx.dialog.close(rx.button("Cancel", variant="soft", color_scheme="gray", type="button")),
        submit,
        justify="end",
        spacing="2",
        width="100%",
        **props,
    )


def control_id(control: rx.Component) -> str | None:
    """The id of the first element in ``control`` that has one (a select's trigger, an input)."""
    own = getattr(control, "id", None)
    if isinstance(own, str) and own:
        return own
    for child in getattr(control, "children", []):
        found = control_id(child)
        if found:
            return found
    return None


def field_label(label: Text, *, html_for: str, required: bool = False) -> rx.Component:
    """A ``<label for>`` naming the control ``html_for``, so screen readers and ``get_by_label`` find it.

    A required field's asterisk sits outside the label: the control's name stays "Name", not "Name *".
    """
    return rx.text(
        rx.el.label(label, html_for=html_for),
        *([rx.text.span(" *", color=rx.color("red", 10), aria_hidden="true")] if required else []),
        size="2",
        weight="medium",
    )


def form_field(
    label: str,
    control: rx.Component,
    *,
    error: rx.Var[str] | None = None,
    help_text: Text = "",
    required: bool = False,
    id: str | None = None,
    html_for: str | None = None,
    group: bool = False,
) -> rx.Component:
    """A labelled field: the label names the control for assistive technology.

    The label is a ``<label for>`` bound to ``html_for`` or, by default, to the
    first element of ``control`` with an id; a control without one is a
    mistake caught when the page is built. ``group=True`` is for a set of
    controls (checkboxes): the field becomes a ``role=group`` named by the
    label, and each control carries its own label.
    """
    if group:
        if not id:
            raise ValueError(f"the field group {label!r} needs an id")
        head: rx.Component = rx.text(label, size="2", weight="medium", id=f"{id}-label")
        wrapper = {"id": id, "role": "group", "aria_labelledby": f"{id}-label"}
    else:
        target = html_for or control_id(control)
        if not target:
            raise ValueError(f"the control of the field {label!r} needs an id for its label to name it")
        head = field_label(label, html_for=target, required=required)
        wrapper = {"id": id} if id else {}
    return rx.vstack(
        head,
        control,
        *(
            [
                rx.cond(
                    error != "",
                    rx.hstack(
                        rx.icon(
                            "circle-alert",
                            size=13,
                            color=rx.color("red", 10),
                            flex_shrink="0",
                            margin_top="2px",
                        ),
                        # pre-line: a message may list several problems, one per line.
                        rx.text(
                            error,
                            size="1",
                            color=rx.color("red", 11),
                            class_name="field-error",
                            white_space="pre-line",
                            style={"overflow_wrap": "anywhere"},
                        ),
                        spacing="1",
                        align="start",
                    ),
                )
            ]
            if error is not None
            else []
        ),
        *([rx.text(help_text, size="1", color_scheme="gray")] if help_text != "" else []),
        spacing="1",
        width="100%",
        **wrapper,
    )


def stat(label: str, value: rx.Component | Text) -> rx.Component:
    """A label over its value, for summary grids."""
    return rx.vstack(
        rx.text(label, size="1", weight="medium", color_scheme="gray"),
        value if isinstance(value, rx.Component) else rx.text(value, size="2"),
        spacing="1",
        min_width="0",
    )


def stat_grid(*stats: rx.Component, columns: str = "4") -> rx.Component:
    return rx.grid(
        *stats,
        columns=rx.breakpoints(initial="1", sm="2", lg=columns),
        gap="16px 24px",
        width="100%",
    )


def mono(value: Text, **props: Any) -> rx.Component:
    return rx.code(value, variant="ghost", size="2", style={"overflow_wrap": "anywhere"}, **props)


def dash_if_empty(value: rx.Var[str]) -> rx.Var[str]:
    return rx.cond(value != "", value, "—")


def relative_time(text: rx.Var[str], stamp: rx.Var[str]) -> rx.Component:
    return rx.tooltip(rx.text(text, size="2", color_scheme="gray", white_space="nowrap"), content=stamp)
