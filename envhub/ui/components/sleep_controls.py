"""The environment page's idle-sleep controls: sleep, wake, pin, and when it will sleep or expire."""

from __future__ import annotations

from typing import Any

import reflex as rx

from envhub.ui.components.common import form_field


def sleep_buttons(S: Any) -> list[rx.Component]:
    """Sleep or Wake (whichever applies), and the pin toggle, for the page header."""
    idle = S.idle
    return [
        rx.cond(
            idle["can_wake"],
            rx.button(
                rx.cond(S.busy == "wake", rx.spinner(size="2"), rx.icon("sun", size=16)),
                "Wake",
                on_click=S.wake,
                disabled=S.busy != "",
                variant="soft",
                id="wake-environment",
            ),
            rx.cond(
                idle["can_sleep"],
                rx.button(
                    rx.cond(S.busy == "sleep", rx.spinner(size="2"), rx.icon("moon", size=16)),
                    "Sleep",
                    on_click=S.sleep,
                    disabled=S.busy != "",
                    variant="soft",
                    color_scheme="gray",
                    id="sleep-environment",
                ),
            ),
        ),
        rx.cond(
            idle["can_pin"],
            rx.button(
                rx.cond(idle["pinned"], rx.icon("pin-off", size=16), rx.icon("pin", size=16)),
                rx.cond(idle["pinned"], "Unpin", "Pin"),
                on_click=S.toggle_pin,
                disabled=S.busy != "",
                variant="soft",
                color_scheme="gray",
                title="A pinned environment neither sleeps when idle nor expires",
                custom_attrs={"aria-pressed": rx.cond(idle["pinned"], "true", "false")},
                id="pin-environment",
            ),
        ),
    ]


def idle_summary(S: Any) -> rx.Component:
    """One line: pinned, or when it sleeps and expires if left alone, and its last activity."""
    idle = S.idle
    muted = {"size": "2", "color_scheme": "gray"}
    return rx.hstack(
        rx.cond(
            idle["pinned"],
            rx.badge(rx.icon("pin", size=12), "Pinned: never sleeps or expires", color_scheme="amber"),
            rx.fragment(
                rx.cond(idle["sleeps"] != "", rx.text("Sleeps ", idle["sleeps"], " if idle", **muted)),
                rx.cond(idle["expires"] != "", rx.text("· deleted ", idle["expires"], " if idle", **muted)),
            ),
        ),
        rx.cond(idle["last_active"] != "", rx.text("· last used ", idle["last_active"], **muted)),
        spacing="2",
        wrap="wrap",
        id="idle-summary",
    )


def _number(name: str, value: Any, element_id: str) -> rx.Component:
    return rx.input(
        name=name,
        id=element_id,
        type="number",
        min="0",
        default_value=value.to_string(),
        key=value.to_string(),
        width="100%",
    )


def idle_setting(S: Any) -> rx.Component:
    """A project's idle sleep and TTL for its development environments, shown and changed here."""
    header = S.header
    return rx.form(
        rx.text(header["idle_label"], size="2", color_scheme="gray", id="project-idle-label"),
        rx.hstack(
            rx.box(
                form_field(
                    "Sleep after (minutes idle)",
                    _number("sleep_after_minutes", header["sleep_after_minutes"], "project-sleep-after"),
                    help_text="Processes stop, the workspace stays; a visit wakes it. 0: never.",
                    error=S.idle_error,
                ),
                flex="1",
            ),
            rx.box(
                form_field(
                    "Delete after (hours idle)",
                    _number("ttl_hours", header["ttl_hours"], "project-ttl"),
                    help_text="Not pull-request environments (they follow their PR). 0: never.",
                ),
                flex="1",
            ),
            rx.button("Save", type="submit", variant="soft", id="save-idle", aria_label="Save idle settings"),
            align="end",
            spacing="3",
            width="100%",
        ),
        on_submit=S.set_idle,
        reset_on_submit=False,
        width="100%",
        max_width="640px",
        id="idle-setting",
    )
