"""The environment page's Workloads panel: pods and their containers, recent events.

On Kubernetes a pod per replica with its containers; on the local runtime the
environment's process tree shows as one "pod" with a ``main`` container. The
view models come from ``ui/workloads.py``.
"""

from __future__ import annotations

from typing import Any

import reflex as rx

from envhub.ui.components.common import section

_DOT = {"width": "8px", "height": "8px", "border_radius": "50%", "flex_shrink": "0"}


def _ready_dot(row: rx.Var) -> rx.Component:
    return rx.tooltip(
        rx.box(
            **_DOT,
            background=rx.cond(row["ready"], rx.color("green", 9), "transparent"),
            border=rx.cond(row["ready"], "none", f"1.5px solid {rx.color('gray', 8)}"),
            class_name="ready-dot",
            data_ready=rx.cond(row["ready"], "true", "false"),
        ),
        content=rx.cond(row["ready"], "Ready: passes its readiness check", "Not ready"),
    )


def _pod_header(row: rx.Var) -> rx.Component:
    return rx.hstack(
        rx.icon("box", size=15, color=rx.color("gray", 10), flex_shrink="0"),
        rx.code(row["pod"], variant="ghost", size="2", weight="medium", style={"overflow_wrap": "anywhere"}),
        rx.badge(row["pod_phase"], color_scheme=row["pod_tone"], variant="soft", radius="full", size="1"),
        rx.text(row["pod_ready"], size="1", color_scheme="gray", white_space="nowrap"),
        rx.spacer(),
        rx.cond(
            row["started"] != "",
            rx.tooltip(
                rx.text("started ", row["started"], size="1", color_scheme="gray", white_space="nowrap"),
                content=row["started_stamp"],
            ),
        ),
        align="center",
        spacing="2",
        width="100%",
        padding="8px 12px",
        background=rx.color("gray", 2),
        border_top=f"1px solid {rx.color('gray', 4)}",
        class_name="workload-pod",
        data_phase=row["pod_phase"],
    )


def _container_line(row: rx.Var) -> rx.Component:
    return rx.hstack(
        _ready_dot(row),
        rx.code(row["container"], variant="ghost", size="2", min_width="72px"),
        rx.badge(row["state"], color_scheme=row["tone"], variant="surface", size="1", class_name="state"),
        rx.cond(
            row["restarts"] != "",
            rx.tooltip(
                rx.badge(
                    rx.icon("rotate-ccw", size=11),
                    row["restarts"],
                    color_scheme="amber",
                    variant="soft",
                    size="1",
                    class_name="restarts",
                ),
                content=row["restarts"] + " restarts",
            ),
        ),
        rx.cond(
            row["reason"] != "",
            rx.text(
                row["reason"],
                size="1",
                weight=rx.cond(row["tone"] == "red", "medium", "regular"),
                color=rx.cond(row["tone"] == "red", rx.color("red", 11), rx.color("gray", 11)),
                class_name="reason",
                style={"overflow_wrap": "anywhere"},
            ),
        ),
        align="center",
        spacing="2",
        width="100%",
        padding="8px 12px 8px 34px",
        border_top=f"1px solid {rx.color('gray', 3)}",
        class_name="workload-row",
        data_state=row["state"],
        data_container=row["container"],
    )


def _fact(label: str, value: rx.Var | rx.Component, **props: Any) -> rx.Component:
    shown = value if isinstance(value, rx.Component) else rx.code(value, variant="ghost", size="1")
    return rx.fragment(
        rx.text(label, size="1", color_scheme="gray", white_space="nowrap"),
        rx.box(shown, min_width="0", style={"overflow_wrap": "anywhere"}, **props),
    )


def _env_row(variable: rx.Var) -> rx.Component:
    value = rx.cond(
        variable["source"] == "",
        rx.code(variable["value"], variant="ghost", size="1"),
        rx.text(variable["reference"], size="1", color_scheme="gray"),
    )
    return rx.el.tr(
        rx.el.td(
            rx.code(variable["name"], variant="ghost", size="1"),
            style={"padding_right": "16px", "vertical_align": "top", "white_space": "nowrap"},
        ),
        rx.el.td(
            rx.hstack(
                value,
                rx.cond(
                    variable["redacted"],
                    rx.badge("redacted", color_scheme="gray", variant="soft", size="1"),
                ),
                spacing="2",
                align="center",
            ),
            data_redacted=rx.cond(variable["redacted"], "true", "false"),
        ),
        class_name="env-row",
        data_name=variable["name"],
    )


def _details(row: rx.Var) -> rx.Component:
    """A container's facts, folded: image and digest, last exit, probes, resources, variables."""
    facts = rx.grid(
        _fact("Image", row["image"]),
        rx.cond(row["image_id"] != "", _fact("Digest", row["image_id"], class_name="digest")),
        rx.cond(
            row["last_exit"] != "",
            _fact(
                "Last exit",
                rx.tooltip(rx.text(row["last_exit"], size="1"), content=row["last_exit_stamp"]),
                class_name="last-exit",
            ),
        ),
        rx.cond(
            row["probes"].length() > 0,
            _fact(
                "Probes",
                rx.vstack(rx.foreach(row["probes"], lambda p: rx.text(p, size="1")), spacing="0"),
                class_name="probes",
            ),
        ),
        rx.cond(row["requests"] != "", _fact("Requests", row["requests"], class_name="requests")),
        rx.cond(row["limits"] != "", _fact("Limits", row["limits"], class_name="limits")),
        grid_template_columns="max-content minmax(0, 1fr)",
        column_gap="12px",
        row_gap="4px",
        width="100%",
    )
    variables = rx.cond(
        row["env"].length() > 0,
        rx.vstack(
            rx.text("Environment (secret values are hidden)", size="1", color_scheme="gray"),
            rx.el.table(
                rx.el.tbody(rx.foreach(row["env"], _env_row)),
                style={"font_size": "12px", "border_collapse": "collapse"},
            ),
            spacing="1",
            width="100%",
        ),
    )
    return rx.el.details(
        rx.el.summary(rx.text("Details", size="1", as_="span"), style={"cursor": "pointer"}),
        rx.vstack(facts, variables, spacing="3", padding_top="6px", width="100%"),
        padding="0 12px 8px 34px",
        class_name="container-details",
        data_container=row["container"],
    )


def _workload(row: rx.Var) -> rx.Component:
    return rx.fragment(
        rx.cond(row["first"], _pod_header(row)),
        rx.cond(row["container"] != "", rx.fragment(_container_line(row), _details(row))),
    )


def _event(event: rx.Var) -> rx.Component:
    warning = event["warning"]
    return rx.hstack(
        rx.cond(
            warning,
            rx.icon("triangle-alert", size=15, color=rx.color("amber", 11), flex_shrink="0"),
            rx.icon("info", size=15, color=rx.color("gray", 9), flex_shrink="0"),
        ),
        rx.vstack(
            rx.hstack(
                rx.text(
                    event["reason"],
                    size="2",
                    weight="medium",
                    color=rx.cond(warning, rx.color("amber", 12), rx.color("gray", 12)),
                ),
                rx.code(event["object"], variant="ghost", size="1", color_scheme="gray"),
                rx.cond(
                    event["count"] != "",
                    rx.badge(event["count"], variant="soft", color_scheme="gray", size="1", radius="full"),
                ),
                spacing="2",
                align="center",
                wrap="wrap",
            ),
            rx.text(event["message"], size="1", color_scheme="gray", style={"overflow_wrap": "anywhere"}),
            spacing="0",
            flex="1",
            min_width="0",
        ),
        rx.vstack(
            rx.tooltip(
                rx.text(event["time"], size="1", color_scheme="gray", white_space="nowrap"),
                content=event["stamp"],
            ),
            rx.cond(
                event["first"] != "",
                rx.tooltip(
                    rx.text("first ", event["first"], size="1", color_scheme="gray", white_space="nowrap"),
                    content=event["first_stamp"],
                ),
            ),
            spacing="0",
            align="end",
        ),
        align="start",
        spacing="3",
        width="100%",
        padding="8px 10px",
        border_radius="var(--radius-2)",
        background=rx.cond(warning, rx.color("amber", 2), "transparent"),
        border_left=rx.cond(warning, f"3px solid {rx.color('amber', 9)}", f"3px solid {rx.color('gray', 4)}"),
        class_name="event-row",
        data_type=rx.cond(warning, "Warning", "Normal"),
    )


def _muted(icon: str, text: rx.Var[str] | str, **props: Any) -> rx.Component:
    return rx.hstack(
        rx.icon(icon, size=15, color=rx.color("gray", 9), flex_shrink="0"),
        rx.text(text, size="2", color_scheme="gray"),
        align="center",
        spacing="2",
        **props,
    )


def workloads_panel(S: Any) -> rx.Component:
    info = S.workloads_info
    location = rx.cond(
        info["location"] != "",
        rx.hstack(
            rx.text(info["location_label"], size="1", color_scheme="gray", white_space="nowrap"),
            rx.code(
                info["location"],
                variant="soft",
                color_scheme="gray",
                size="1",
                style={"overflow_wrap": "anywhere"},
            ),
            align="center",
            spacing="2",
            min_width="0",
            id="workloads-location",
        ),
    )
    pods = rx.cond(
        S.workload_rows.length() > 0,
        rx.box(
            rx.foreach(S.workload_rows, _workload),
            width="100%",
            border=f"1px solid {rx.color('gray', 4)}",
            border_radius="var(--radius-3)",
            overflow="hidden",
            # The first pod header needs no line above it: the box's border is there.
            style={"& > .workload-pod:first-child": {"border_top": "none"}},
            id="workloads-pods",
        ),
        rx.cond(info["note"] == "", _muted("circle-dashed", info["empty"], id="workloads-empty")),
    )
    note = rx.cond(
        info["note"] != "",
        rx.callout.root(
            rx.callout.icon(rx.icon("info", size=16)),
            rx.callout.text(info["note"]),
            color_scheme="gray",
            size="1",
            width="100%",
            id="workloads-note",
        ),
    )
    events = rx.vstack(
        rx.hstack(
            rx.text("Recent events", size="2", weight="medium"),
            rx.cond(
                S.events.length() > 0,
                rx.badge(S.events.length(), variant="soft", color_scheme="gray", radius="full", size="1"),
            ),
            align="center",
            spacing="2",
        ),
        rx.cond(
            S.events.length() > 0,
            rx.vstack(
                rx.foreach(S.events, _event),
                spacing="1",
                width="100%",
                max_height="340px",
                overflow_y="auto",
                id="events",
            ),
            rx.cond(
                info["local"],
                _muted("info", info["events_empty"], id="events-empty"),
                _muted("calendar-check", info["events_empty"], id="events-empty"),
            ),
        ),
        spacing="2",
        width="100%",
    )
    return section(
        "Workloads",
        location,
        note,
        pods,
        rx.cond(info["note"] == "", rx.fragment(rx.separator(size="4"), events)),
        icon="boxes",
        actions=rx.text("updates every few seconds", size="1", color_scheme="gray"),
        id="workloads",
    )
