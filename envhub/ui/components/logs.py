"""The logs panel: the environment's last lines of output, newest at the bottom, searched on the
server, of the previous instance after a crash, and downloadable."""

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


# The time ranges the page offers ("all": no bound), as domain/logs.py reads them.
SINCE_CHOICES = ("all", "5m", "15m", "1h", "6h", "24h")


def log_tools(S: Any) -> rx.Component:
    """A search (substring or regular expression), the previous instance, and a download of the lines."""
    search = rx.form(
        rx.hstack(
            rx.el.label("Search the logs", html_for="log-search", class_name="rt-sr-only", style=_HIDDEN),
            rx.input(
                name="search",
                id="log-search",
                default_value=S.log_search,
                placeholder="Search…",
                size="1",
                max_length=500,
            ),
            rx.el.label(
                rx.checkbox(name="regex", id="log-regex", default_checked=S.log_regex, size="1"),
                rx.text("Regex", size="1"),
                style={"display": "flex", "gap": "4px", "align-items": "center"},
            ),
            rx.button("Search", type="submit", size="1", variant="soft", id="log-search-go"),
            align="center",
            spacing="2",
        ),
        on_submit=S.search_logs,
        reset_on_submit=False,
    )
    since = rx.hstack(
        rx.el.label(rx.text("Since", size="1", color_scheme="gray"), html_for="log-since"),
        rx.select(
            list(SINCE_CHOICES),
            value=S.log_since_choice,
            on_change=S.pick_log_since,
            size="1",
            variant="surface",
            id="log-since",
        ),
        align="center",
        spacing="2",
        title="Lines printed in this last while (where the runtime records when each line was printed)",
    )
    previous = rx.el.label(
        rx.switch(checked=S.log_previous, on_change=S.show_previous_logs, size="1", id="log-previous"),
        rx.text("Previous instance", size="1"),
        title="What the container printed before its last restart (after a crash)",
        style={"display": "flex", "gap": "6px", "align-items": "center"},
    )
    # A document navigation, not client-side routing: the browser downloads the file with its cookie.
    download = rx.link(
        rx.button(rx.icon("download", size=14), "Download", size="1", variant="soft", color_scheme="gray"),
        href=S.logs_download_href,
        reload_document=True,
        id="logs-download",
    )
    return rx.hstack(search, since, previous, download, align="center", spacing="3", wrap="wrap")


_HIDDEN = {
    "position": "absolute",
    "width": "1px",
    "height": "1px",
    "overflow": "hidden",
    "clip": "rect(0 0 0 0)",
    "white-space": "nowrap",
}


def logs_panel(
    lines: rx.Var[list[str]],
    *,
    live: rx.Var[bool],
    empty: rx.Var[str] | str = "No output yet.",
    picker: rx.Component | None = None,
    tools: rx.Component | None = None,
    note: rx.Var[str] | str = "",
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
    extra = [tools] if tools is not None else []
    shown_note = rx.cond(note != "", rx.text(note, size="1", color_scheme="gray", id="logs-note"))
    return section("Logs", *extra, shown_note, body, icon="scroll-text", actions=actions)
