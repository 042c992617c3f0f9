"""The provisioning progress panel: a job's steps with their state and timings."""

from __future__ import annotations

import reflex as rx

from envhub.ui.components.badges import run_status_badge
from envhub.ui.components.common import section


def step_icon(status: rx.Var[str]) -> rx.Component:
    box = {"width": "24px", "height": "24px", "border_radius": "50%", "flex_shrink": "0"}
    return rx.match(
        status,
        ("running", rx.center(rx.spinner(size="2"), **box, background=rx.color("blue", 3))),
        ("done", rx.center(rx.icon("check", size=14, color="white"), **box, background=rx.color("green", 9))),
        ("failed", rx.center(rx.icon("x", size=14, color="white"), **box, background=rx.color("red", 9))),
        (
            "skipped",
            rx.center(
                rx.icon("skip-forward", size=12, color=rx.color("gray", 11)),
                **box,
                background=rx.color("gray", 4),
            ),
        ),
        rx.center(
            rx.box(width="8px", height="8px", border_radius="50%", background=rx.color("gray", 7)),
            **box,
            border=f"1px solid {rx.color('gray', 6)}",
        ),
    )


def step_row(step: rx.Var) -> rx.Component:
    return rx.hstack(
        step_icon(step["status"]),
        rx.vstack(
            rx.text(
                step["title"],
                size="2",
                weight="medium",
                color=rx.cond(step["status"] == "pending", rx.color("gray", 10), rx.color("gray", 12)),
            ),
            rx.cond(
                step["detail"] != "",
                rx.text(step["detail"], size="1", color_scheme="gray", style={"word_break": "break-word"}),
            ),
            spacing="0",
            flex="1",
            min_width="0",
        ),
        rx.text(step["timing"], size="1", color_scheme="gray", white_space="nowrap"),
        align="start",
        spacing="3",
        width="100%",
        padding_y="6px",
        class_name="step",
        data_status=step["status"],
        data_key=step["key"],
    )


def progress_panel(run: rx.Var, steps: rx.Var[list]) -> rx.Component:
    """``run`` is a RunView var, ``steps`` a list of StepRow vars."""
    meta = rx.hstack(
        rx.text(run["kind"], weight="medium", size="2"),
        run_status_badge(run["status"]),
        rx.spacer(),
        rx.text("attempt ", run["attempts"], size="1", color_scheme="gray"),
        rx.text("·", size="1", color_scheme="gray"),
        rx.text("started ", run["started"], size="1", color_scheme="gray"),
        rx.cond(run["took"] != "", rx.text("· ", run["took"], size="1", color_scheme="gray")),
        align="center",
        spacing="2",
        width="100%",
        wrap="wrap",
    )
    run_error = rx.cond(
        run["error"] != "",
        rx.callout.root(
            rx.callout.icon(rx.icon("triangle-alert", size=16)),
            rx.vstack(
                rx.hstack(
                    rx.cond(
                        run["error_code"] != "", rx.code(run["error_code"], variant="ghost", weight="bold")
                    ),
                    rx.text(run["error"], size="2"),
                    spacing="2",
                    wrap="wrap",
                ),
                # A failed run's next step is in the failure callout at the top of the page.
                rx.cond(
                    (run["advice"] != "") & (run["status"] != "failed"),
                    rx.text("Next step: ", run["advice"], size="2"),
                ),
                spacing="1",
            ),
            color_scheme=rx.cond(run["status"] == "failed", "red", "amber"),
            size="1",
            width="100%",
        ),
    )
    return section(
        "Progress",
        rx.cond(
            run["kind"] != "",
            rx.vstack(
                meta,
                rx.separator(size="4"),
                rx.vstack(rx.foreach(steps, step_row), spacing="0", width="100%", id="progress-steps"),
                run_error,
                spacing="3",
                width="100%",
            ),
            rx.text("No job has run for this environment yet.", color_scheme="gray", size="2"),
        ),
        icon="list-checks",
    )
