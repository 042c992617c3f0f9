"""The environment page's panels: URL, failure, details, audit trail, delete.

They take the page's state class so the markup stays here and the handlers stay
with the state (``ui/pages/environment.py``).
"""

from __future__ import annotations

from typing import Any

import reflex as rx

from envhub.ui.components.badges import kind_badge, outcome_badge
from envhub.ui.components.common import dash_if_empty, mono, pager, relative_time, section, stat, stat_grid


def url_hero(S: Any) -> rx.Component:
    detail = S.detail
    phase = detail["phase"]
    ready = (phase == "ready") & (detail["url"] != "")
    return rx.card(
        rx.hstack(
            rx.center(
                rx.icon("globe", size=22, color=rx.color("accent", 11)),
                width="44px",
                height="44px",
                border_radius="var(--radius-3)",
                background=rx.color("accent", 3),
                flex_shrink="0",
            ),
            rx.vstack(
                rx.text("Public URL", size="1", weight="medium", color_scheme="gray"),
                rx.cond(
                    ready,
                    rx.link(
                        rx.hstack(
                            rx.text(
                                detail["url"], size="5", weight="bold", style={"overflow_wrap": "anywhere"}
                            ),
                            rx.icon("external-link", size=18, flex_shrink="0"),
                            align="center",
                            spacing="2",
                        ),
                        href=detail["url"],
                        is_external=True,
                        id="public-url",
                    ),
                    rx.text(
                        rx.match(
                            phase,
                            ("deleted", "This environment was deleted; its URL no longer answers."),
                            ("deleting", "Tearing down…"),
                            ("failed", "Not serving: the last attempt failed (see below)."),
                            "Appears here once the environment is ready.",
                        ),
                        size="4",
                        color_scheme="gray",
                        id="public-url-pending",
                    ),
                ),
                spacing="1",
                min_width="0",
                flex="1",
            ),
            rx.cond(
                ready,
                rx.hstack(
                    rx.tooltip(
                        rx.icon_button(
                            rx.icon("copy", size=16),
                            on_click=[rx.set_clipboard(detail["url"]), rx.toast.success("URL copied")],
                            variant="soft",
                            color_scheme="gray",
                            aria_label="Copy URL",
                        ),
                        content="Copy URL",
                    ),
                    rx.link(
                        rx.button("Open", rx.icon("arrow-up-right", size=16)),
                        href=detail["url"],
                        is_external=True,
                    ),
                    spacing="2",
                ),
            ),
            align="center",
            spacing="4",
            width="100%",
        ),
        size="3",
        width="100%",
    )


def failure_callout(S: Any) -> rx.Component:
    detail = S.detail
    return rx.cond(
        detail["phase"] == "failed",
        rx.callout.root(
            rx.callout.icon(rx.icon("octagon-alert", size=18)),
            rx.vstack(
                rx.hstack(
                    rx.text("Failed", weight="bold"),
                    rx.cond(detail["error_code"] != "", rx.code(detail["error_code"], color_scheme="red")),
                    spacing="2",
                    align="center",
                ),
                rx.text(detail["message"], size="2"),
                rx.cond(
                    detail["advice"] != "",
                    rx.text(rx.text.strong("Next step: "), detail["advice"], size="2"),
                ),
                spacing="1",
            ),
            color_scheme="red",
            width="100%",
            id="failure",
        ),
    )


def condition_callout(S: Any) -> rx.Component:
    """What the runtime reports apart from the phase, in words, with its code and message."""
    detail = S.detail
    unreachable = detail["condition"].to(str).startswith("cluster_")
    return rx.cond(
        (detail["condition"] != "") & (detail["phase"] != "failed"),
        rx.callout.root(
            rx.callout.icon(
                rx.cond(unreachable, rx.icon("cloud-off", size=18), rx.icon("triangle-alert", size=18))
            ),
            rx.vstack(
                rx.hstack(
                    rx.text(detail["condition_title"], weight="bold", size="2", id="condition-title"),
                    rx.code(detail["condition"], variant="ghost", size="1", color_scheme="gray"),
                    spacing="2",
                    align="center",
                    wrap="wrap",
                ),
                rx.cond(detail["condition_message"] != "", rx.text(detail["condition_message"], size="2")),
                rx.cond(
                    detail["condition_hint"] != "",
                    rx.text(detail["condition_hint"], size="2", color_scheme="gray"),
                ),
                spacing="1",
            ),
            color_scheme=detail["condition_tone"],
            width="100%",
            id="condition",
        ),
    )


def deleted_callout(S: Any) -> rx.Component:
    detail = S.detail
    return rx.cond(
        detail["phase"] == "deleted",
        rx.callout.root(
            rx.callout.icon(rx.icon("archive", size=18)),
            rx.callout.text(
                "This environment was deleted ",
                detail["deleted"],
                ". Its processes and workspace are gone; the audit trail below is kept.",
            ),
            color_scheme="gray",
            width="100%",
            id="deleted",
        ),
    )


def details_card(S: Any) -> rx.Component:
    detail = S.detail
    muted = {"size": "2", "color_scheme": "gray"}
    return section(
        "Details",
        stat_grid(
            stat("Kind", rx.box(kind_badge(detail["kind"]))),
            stat(
                "Made by",
                rx.cond(
                    detail["source_url"] != "",
                    rx.link(detail["source"], href=detail["source_url"], is_external=True, size="2"),
                    rx.text(detail["source"], size="2"),
                ),
            ),
            stat(
                "Created", rx.tooltip(rx.text(detail["created"], size="2"), content=detail["created_stamp"])
            ),
            stat(
                "Git ref",
                rx.cond(detail["ref"] != "", mono(detail["ref"]), rx.text("default branch", **muted)),
            ),
            stat("Health check", mono(detail["health_path"])),
            stat("Repository", rx.cond(detail["repo"] != "", mono(detail["repo"]), rx.text("none", **muted))),
            stat("Generation", rx.text(detail["generation"], size="2")),
            columns="2",
        ),
        rx.separator(size="4"),
        stat("Command", mono(detail["command"])),
        stat(
            "Variables", rx.cond(detail["env_keys"] != "", mono(detail["env_keys"]), rx.text("none", **muted))
        ),
        icon="info",
    )


def devcontainer_panel(S: Any) -> rx.Component:
    """The repository's devcontainer.json: its forwarded ports, and every key envhub did not honour."""
    detail = S.detail
    muted = {"size": "2", "color_scheme": "gray"}

    def port_row(port: rx.Var) -> rx.Component:
        return rx.table.row(
            rx.table.cell(mono(port["port"].to_string())),
            rx.table.cell(rx.text(rx.cond(port["label"] != "", port["label"], "—"), size="2")),
            rx.table.cell(
                rx.cond(
                    port["url"] != "",
                    rx.link(port["url"], href=port["url"], is_external=True, size="2"),
                    rx.text("no public URL (see below)", **muted),
                )
            ),
        )

    def unsupported_row(entry: rx.Var) -> rx.Component:
        return rx.table.row(
            rx.table.cell(mono(entry["key"])),
            rx.table.cell(rx.text(entry["reason"], size="2")),
        )

    ports = rx.table.root(
        rx.table.header(
            rx.table.row(
                rx.table.column_header_cell("Port"),
                rx.table.column_header_cell("Label"),
                rx.table.column_header_cell("URL"),
            )
        ),
        rx.table.body(rx.foreach(detail["devcontainer_ports"], port_row)),
        size="1",
        width="100%",
        aria_label="Forwarded ports",
    )
    unsupported = rx.table.root(
        rx.table.header(
            rx.table.row(rx.table.column_header_cell("Key"), rx.table.column_header_cell("Why not"))
        ),
        rx.table.body(rx.foreach(detail["devcontainer_unsupported"], unsupported_row)),
        size="1",
        width="100%",
        aria_label="Not honoured",
    )
    return section(
        "Dev container",
        stat("Configuration", mono(detail["devcontainer"])),
        rx.cond(detail["devcontainer_ports"].length() > 0, ports),
        rx.cond(
            detail["devcontainer_unsupported"].length() > 0,
            rx.vstack(rx.text("Not honoured", weight="medium", size="2"), unsupported, width="100%"),
            rx.text("Everything in it is honoured.", **muted),
        ),
        icon="container",
        id="devcontainer",
    )


def audit_panel(S: Any) -> rx.Component:
    def row(event: rx.Var) -> rx.Component:
        return rx.table.row(
            rx.table.cell(relative_time(event["time"], event["stamp"])),
            rx.table.cell(rx.text(event["actor"], size="2")),
            rx.table.cell(rx.code(event["action"], variant="ghost", size="2")),
            rx.table.cell(outcome_badge(event["outcome"])),
            rx.table.cell(
                rx.hstack(
                    rx.text(
                        rx.cond(event["error_code"] != "", event["error_code"] + ": ", ""),
                        dash_if_empty(event["summary"]),
                        size="1",
                        color_scheme="gray",
                    ),
                    rx.cond(
                        event["recording"] != "",
                        rx.button(
                            rx.icon("circle-play", size=13),
                            "Replay",
                            size="1",
                            variant="soft",
                            on_click=S.open_replay(
                                event["recording"], event["actor"] + " · " + event["stamp"]
                            ),
                            class_name="replay-recording",
                        ),
                    ),
                    align="center",
                    spacing="2",
                )
            ),
            align="center",
        )

    return section(
        "Audit trail",
        rx.box(
            rx.table.root(
                rx.table.header(
                    rx.table.row(
                        *[
                            rx.table.column_header_cell(h)
                            for h in ("When", "Actor", "Action", "Outcome", "Details")
                        ]
                    )
                ),
                rx.table.body(rx.foreach(S.audit, row)),
                variant="ghost",
                size="1",
                width="100%",
                id="audit-table",
            ),
            width="100%",
            overflow_x="auto",
        ),
        pager(
            S.audit_label,
            has_prev=S.audit_offset > 0,
            has_next=S.audit_has_next,
            on_prev=S.prev_audit,
            on_next=S.next_audit,
        ),
        icon="history",
    )


def typed_confirmation(
    name: rx.Var[str], value: rx.Var[str], on_change: Any, *, id: str = "confirm-name"
) -> rx.Component:
    """Type its name to confirm: what deleting a deployment environment, or restoring its database, asks."""
    return rx.vstack(
        rx.text(
            rx.el.label("Type ", rx.code(name), " to confirm", html_for=id),
            size="2",
            weight="medium",
        ),
        rx.input(
            value=value,
            on_change=on_change,
            id=id,
            auto_complete="off",
            spellcheck=False,
            width="100%",
            font_family="var(--code-font-family)",
        ),
        spacing="1",
        width="100%",
        margin_top="12px",
    )


def delete_confirm(S: Any) -> rx.Component:
    deployment = S.detail["kind"] == "deployment"
    return rx.alert_dialog.root(
        rx.alert_dialog.trigger(
            rx.button(
                rx.cond(S.busy == "delete", rx.spinner(size="2"), rx.icon("trash-2", size=16)),
                "Delete",
                color_scheme="red",
                variant="soft",
                disabled=~S.can_delete | (S.busy != ""),
                id="delete-environment",
            )
        ),
        rx.alert_dialog.content(
            rx.alert_dialog.title("Delete ", rx.code(S.detail["name"]), "?"),
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
            rx.cond(deployment, typed_confirmation(S.detail["name"], S.confirm_text, S.set_confirm_text)),
            rx.hstack(
                rx.alert_dialog.cancel(rx.button("Cancel", variant="soft", color_scheme="gray")),
                rx.alert_dialog.action(
                    rx.button(
                        "Delete environment",
                        color_scheme="red",
                        on_click=S.delete,
                        disabled=deployment & (S.confirm_text != S.detail["name"]),
                        id="confirm-delete",
                    )
                ),
                spacing="3",
                justify="end",
                margin_top="16px",
            ),
            max_width="440px",
        ),
        open=S.confirm_open,
        on_open_change=S.set_confirm_open,
    )
