"""Releases as the deployment pages show them: status badges, gates, approvals and object diffs."""

from __future__ import annotations

import reflex as rx

from envhub.ui.components.common import mono

# The colour of a diff line, by the tone ``ui/views.diff_lines`` gives it.
_DIFF_COLORS = {
    "add": (rx.color("green", 3), rx.color("green", 11)),
    "del": (rx.color("red", 3), rx.color("red", 11)),
    "hunk": (rx.color("blue", 2), rx.color("blue", 11)),
    "head": ("transparent", rx.color("gray", 10)),
}
_WORKING = ("rendering", "deploying")


def release_status(status: rx.Var[str], tone: rx.Var[str]) -> rx.Component:
    """A release's status in its tone (the view model's ``tone``); a spinner while it works."""
    return rx.badge(
        rx.cond(
            (status == _WORKING[0]) | (status == _WORKING[1]),
            rx.spinner(size="1"),
            rx.box(width="6px", height="6px", border_radius="50%", background="currentColor"),
        ),
        status,
        color_scheme=tone,
        radius="full",
        variant="soft",
        class_name="release-status",
        data_status=status,
    )


def gate_list(gates: rx.Var[list], *, id: str = "") -> rx.Component:
    """Each gate with ✓ or ✗ and its reason."""

    def gate(item: rx.Var) -> rx.Component:
        return rx.hstack(
            rx.cond(
                item["passed"],
                rx.icon("circle-check", size=16, color=rx.color("green", 10), flex_shrink="0"),
                rx.icon("circle-x", size=16, color=rx.color("red", 10), flex_shrink="0"),
            ),
            rx.vstack(
                rx.text(item["gate"], size="2", weight="medium"),
                rx.text(item["reason"], size="1", color_scheme="gray", style={"overflow_wrap": "anywhere"}),
                spacing="0",
                min_width="0",
            ),
            rx.text(
                rx.cond(item["passed"], "✓", "✗"),
                size="1",
                color=rx.cond(item["passed"], rx.color("green", 11), rx.color("red", 11)),
                margin_left="auto",
                aria_hidden="true",
            ),
            align="start",
            spacing="2",
            width="100%",
            class_name="gate",
            data_gate=item["gate"],
            data_passed=rx.cond(item["passed"], "true", "false"),
        )

    return rx.vstack(
        rx.cond(
            gates.length() > 0,
            rx.foreach(gates, gate),
            rx.text(
                "No approval or gate: it lands as soon as it is rendered.", size="2", color_scheme="gray"
            ),
        ),
        spacing="2",
        width="100%",
        **({"id": id} if id else {}),
    )


def approvals_list(approvals: rx.Var[list]) -> rx.Component:
    def approval(item: rx.Var) -> rx.Component:
        return rx.hstack(
            rx.icon("user-check", size=15, color=rx.color("green", 10), flex_shrink="0"),
            rx.vstack(
                rx.text(rx.text.strong(item["name"]), " approved ", item["at"], size="2"),
                rx.cond(
                    item["comment"] != "",
                    rx.text(
                        "“",
                        item["comment"],
                        "”",
                        size="2",
                        color_scheme="gray",
                        class_name="approval-comment",
                    ),
                ),
                spacing="0",
            ),
            align="start",
            spacing="2",
            class_name="approval",
        )

    return rx.vstack(
        rx.cond(
            approvals.length() > 0,
            rx.foreach(approvals, approval),
            rx.text("No approvals yet.", size="2", color_scheme="gray"),
        ),
        spacing="2",
        width="100%",
    )


def _diff_line(line: rx.Var) -> rx.Component:
    cases = [
        (tone, rx.box(line["text"], background=bg, color=fg, padding_x="10px", white_space="pre"))
        for tone, (bg, fg) in _DIFF_COLORS.items()
    ]
    return rx.match(line["tone"], *cases, rx.box(line["text"], padding_x="10px", white_space="pre"))


def _change_badge(change: rx.Var[str]) -> rx.Component:
    return rx.match(
        change,
        ("added", rx.badge("added", color_scheme="green", variant="soft")),
        ("removed", rx.badge("removed", color_scheme="red", variant="soft")),
        rx.badge(change, color_scheme="amber", variant="soft"),
    )


def diff_viewer(changes: rx.Var[list], *, empty: str | rx.Var[str], id: str) -> rx.Component:
    """Object by object: a summary line each, opening onto its unified diff."""

    def change(item: rx.Var) -> rx.Component:
        return rx.el.details(
            rx.el.summary(
                rx.hstack(
                    rx.icon("chevron-right", size=14, class_name="diff-chevron", flex_shrink="0"),
                    _change_badge(item["change"]),
                    mono(item["key"]),
                    rx.spacer(),
                    rx.text("+", item["added"], size="1", color=rx.color("green", 11)),
                    rx.text("−", item["removed"], size="1", color=rx.color("red", 11)),
                    align="center",
                    spacing="2",
                    width="100%",
                ),
                cursor="pointer",
                padding="8px 10px",
                list_style="none",
                class_name="diff-summary",
            ),
            rx.box(
                rx.foreach(item["lines"], _diff_line),
                font_family="var(--code-font-family)",
                font_size="12px",
                line_height="1.55",
                overflow_x="auto",
                max_height="420px",
                overflow_y="auto",
                border_top=f"1px solid {rx.color('gray', 4)}",
                padding_y="6px",
                background=rx.color("gray", 1),
            ),
            border=f"1px solid {rx.color('gray', 5)}",
            border_radius="var(--radius-3)",
            width="100%",
            class_name="object-change",
            data_key=item["key"],
        )

    return rx.vstack(
        rx.cond(
            changes.length() > 0,
            rx.foreach(changes, change),
            rx.text(empty, size="2", color_scheme="gray", class_name="no-changes"),
        ),
        spacing="2",
        width="100%",
        id=id,
    )


def objects_viewer(text: rx.Var[str]) -> rx.Component:
    return rx.cond(
        text != "",
        rx.box(
            rx.el.pre(text, margin="0"),
            font_family="var(--code-font-family)",
            font_size="12px",
            line_height="1.55",
            padding="10px 12px",
            max_height="360px",
            overflow="auto",
            border=f"1px solid {rx.color('gray', 5)}",
            border_radius="var(--radius-3)",
            background=rx.color("gray", 2),
            width="100%",
            id="release-objects",
        ),
        rx.text("Nothing rendered yet.", size="2", color_scheme="gray"),
    )
