"""The Backups section under each managed PostgreSQL service, and the restore dialog.

They take the environment page's state (``S``: its kind, name and whether
this person may change it) and the backups substate (``B``,
``ui/pages/environment_backups.py``), so the markup stays here and the
handlers stay with the state. People who may not change the environment see
the same facts without the buttons, as in the rest of the Services panel.
"""

from __future__ import annotations

from typing import Any

import reflex as rx

from envhub.ui.components.common import dash_if_empty, error_callout
from envhub.ui.components.environment_panels import typed_confirmation

MUTED = {"size": "1", "color_scheme": "gray"}
_STATES = {
    "queued": ("gray", True),
    "running": ("blue", True),
    "succeeded": ("green", False),
    "failed": ("red", False),
    "expired": ("gray", False),
}


def _state_badge(state: rx.Var[str]) -> rx.Component:
    cases = [
        (
            name,
            rx.badge(
                *([rx.spinner(size="1")] if working else []),
                name,
                color_scheme=color,
                variant="soft",
                radius="full",
                size="1",
            ),
        )
        for name, (color, working) in _STATES.items()
    ]
    return rx.match(
        state, *cases, rx.badge(state, color_scheme="gray", variant="soft", radius="full", size="1")
    )


def _back_up_button(row: rx.Var, panel: rx.Var, S: Any, B: Any) -> rx.Component:
    name = row["name"]
    working = panel["active"] | (B.busy == "backup:" + name)
    return rx.cond(
        S.can_redeploy,
        rx.button(
            rx.cond(working, rx.spinner(size="1"), rx.icon("database-backup", size=14)),
            rx.cond(panel["active"], "Backing up…", "Back up now"),
            size="1",
            variant="soft",
            on_click=B.back_up(name),
            # One at a time: asking again while one runs would only return that one.
            disabled=working | (B.busy != "") | (row["state"] != "ready"),
            class_name="back-up-now",
        ),
    )


def _toned(tone: rx.Var[str], step: int) -> rx.Var:
    return rx.match(
        tone, *[(name, rx.color(name, step)) for name in ("amber", "green")], rx.color("gray", step)
    )


def _summary(row: rx.Var, panel: rx.Var, S: Any, B: Any) -> rx.Component:
    """The last good backup, large; or, before the first, the empty state. The button sits on the right."""
    status = panel["status"]
    good = status["last_success"] != ""
    warned = status["warning"] != ""
    tone = rx.cond(warned, "amber", rx.cond(good, "green", "gray"))
    return rx.hstack(
        rx.center(
            rx.icon(
                rx.cond(warned, "triangle-alert", rx.cond(good, "shield-check", "archive")),
                size=18,
                color=_toned(tone, 11),
            ),
            width="34px",
            height="34px",
            border_radius="var(--radius-3)",
            background=_toned(tone, 3),
            flex_shrink="0",
        ),
        rx.vstack(
            rx.text(
                rx.cond(
                    good,
                    "Last backup " + status["last_success"] + " · " + status["last_size"],
                    rx.cond(panel["empty"], "No backups yet", "No successful backup yet"),
                ),
                size="3",
                weight="bold",
                class_name="last-backup",
            ),
            rx.text("Backups ", status["schedule"], **MUTED, class_name="backup-schedule"),
            rx.cond(
                panel["empty"],
                rx.text(
                    rx.cond(
                        status["scheduled"],
                        "The first scheduled backup runs shortly.",
                        "A development environment is backed up when someone asks for it.",
                    ),
                    **MUTED,
                ),
            ),
            spacing="0",
            min_width="0",
        ),
        rx.spacer(),
        _back_up_button(row, panel, S, B),
        align="center",
        spacing="3",
        width="100%",
        wrap="wrap",
        class_name=rx.cond(panel["empty"], "backups-summary backups-empty", "backups-summary"),
    )


def _warning(panel: rx.Var) -> rx.Component:
    warning = panel["status"]["warning"]
    return rx.cond(
        warning != "",
        rx.callout.root(
            rx.callout.icon(rx.icon("triangle-alert", size=16)),
            rx.callout.text(warning, style={"overflow_wrap": "anywhere"}),
            color_scheme="amber",
            size="1",
            role="alert",
            width="100%",
            class_name="backup-warning",
        ),
    )


def _check(backup: rx.Var) -> rx.Component:
    passed = backup["check_passed"]
    return rx.cond(
        backup["check"] != "",
        rx.hstack(
            rx.icon(
                rx.cond(passed, "shield-check", "shield-x"),
                size=14,
                color=rx.cond(passed, rx.color("green", 10), rx.color("red", 10)),
                flex_shrink="0",
            ),
            rx.text(backup["check"], size="1", color_scheme=rx.cond(passed, "gray", "red")),
            spacing="1",
            align="center",
        ),
        rx.text("—", **MUTED),
    )


def _backup_row(backup: rx.Var, panel: rx.Var, S: Any, B: Any) -> rx.Component:
    service = panel["service"]
    what = "the backup taken " + backup["created"] + " (" + backup["size"] + ")"
    restore = rx.cond(
        backup["restorable"] & S.can_redeploy,
        rx.button(
            rx.icon("archive-restore", size=13),
            "Restore",
            size="1",
            variant="ghost",
            color_scheme="orange",
            on_click=B.ask_restore(backup["id"], service, what),
            disabled=panel["restoring"] | (B.busy != ""),  # one restore into a database at a time
            class_name="restore-backup",
        ),
    )
    sha = backup["sha256"]
    return rx.table.row(
        rx.table.cell(rx.text("#", backup["id"], size="2", color_scheme="gray")),
        rx.table.cell(
            rx.tooltip(
                rx.text(backup["created"], size="2", white_space="nowrap"), content=backup["created_at"]
            )
        ),
        rx.table.cell(
            rx.tooltip(
                rx.text(backup["trigger_label"], size="2", white_space="nowrap"),
                content="asked by " + backup["requested_by"],
            )
        ),
        rx.table.cell(
            rx.cond(
                backup["error"] != "",
                rx.tooltip(rx.box(_state_badge(backup["state"])), content=backup["error"]),
                _state_badge(backup["state"]),
            )
        ),
        rx.table.cell(rx.text(dash_if_empty(backup["size"]), size="2", white_space="nowrap")),
        rx.table.cell(rx.text(dash_if_empty(backup["duration"]), size="2", white_space="nowrap")),
        rx.table.cell(
            rx.cond(
                sha != "",
                rx.tooltip(
                    rx.code(sha[:12], variant="ghost", size="1", class_name="backup-sha"),
                    content="SHA-256 " + sha,
                ),
                rx.cond(
                    backup["method"] == "barman",
                    rx.tooltip(
                        rx.text("barman", **MUTED),
                        content="The CloudNativePG operator's base backup: barman keeps its size and checks",
                    ),
                    rx.text("—", **MUTED),
                ),
            )
        ),
        rx.table.cell(_check(backup)),
        rx.table.cell(
            rx.cond(
                backup["expires_at"] != "",
                rx.tooltip(
                    rx.text(backup["expires_at"][:10], size="2", white_space="nowrap"),
                    content=backup["expires"],
                ),
                rx.text("—", **MUTED),
            )
        ),
        rx.table.cell(restore, text_align="right"),
        align="center",
        class_name="backup-row",
        data_state=backup["state"],
        data_trigger=backup["trigger"],
    )


def _table(panel: rx.Var, S: Any, B: Any) -> rx.Component:
    headers = (
        "Backup",
        "When",
        "Trigger",
        "State",
        "Size",
        "Took",
        "Checksum",
        "Restore check",
        "Kept until",
        "",
    )
    return rx.box(
        rx.table.root(
            rx.table.header(
                rx.table.row(*[rx.table.column_header_cell(h, white_space="nowrap") for h in headers])
            ),
            rx.table.body(rx.foreach(panel["rows"], lambda backup: _backup_row(backup, panel, S, B))),
            variant="ghost",
            size="1",
            width="100%",
            class_name="backups-table",
        ),
        width="100%",
        overflow_x="auto",
    )


def _pages(panel: rx.Var, service: rx.Var, B: Any) -> rx.Component:
    return rx.cond(
        panel["paged"] | (panel["older"] != 0),
        rx.hstack(
            rx.text(rx.cond(panel["paged"], "Older backups", "Newest first"), **MUTED),
            rx.spacer(),
            rx.button(
                rx.icon("chevron-left", size=14),
                "Newer",
                size="1",
                variant="soft",
                color_scheme="gray",
                disabled=~panel["paged"],
                on_click=B.newer(service),
            ),
            rx.button(
                "Older",
                rx.icon("chevron-right", size=14),
                size="1",
                variant="soft",
                color_scheme="gray",
                disabled=panel["older"] == 0,
                on_click=B.older(service),
            ),
            align="center",
            spacing="2",
            width="100%",
        ),
    )


def _restore_item(item: rx.Var) -> rx.Component:
    return rx.hstack(
        _state_badge(item["state"]),
        rx.text(item["purpose_label"], size="2", weight="medium", white_space="nowrap"),
        rx.text("of #", item["backup_id"], " · ", item["created"], " · by ", item["requested_by"], **MUTED),
        rx.cond(
            item["error"] != "",
            rx.text("— ", item["error"], size="1", color_scheme="red", style={"overflow_wrap": "anywhere"}),
            rx.cond(item["detail"] != "", rx.text("— ", item["detail"], size="1")),
        ),
        align="center",
        spacing="2",
        wrap="wrap",
        width="100%",
        class_name="restore-row",
        data_state=item["state"],
        data_purpose=item["purpose"],
    )


def _restores(panel: rx.Var) -> rx.Component:
    return rx.cond(
        panel["restores"].length() > 0,
        rx.vstack(
            rx.text("Recent restores", size="1", weight="medium", color_scheme="gray"),
            rx.foreach(panel["restores"], _restore_item),
            spacing="1",
            width="100%",
            padding_top="4px",
            border_top=f"1px solid {rx.color('gray', 4)}",
        ),
    )


def backups_section(row: rx.Var, S: Any, B: Any) -> rx.Component:
    """Under a PostgreSQL service of the Services panel (``row``: its ManagedServiceRow)."""
    name = row["name"]
    panel = B.panels[name]
    return rx.cond(
        (row["kind"] == "postgres") & B.panels.contains(name),
        rx.vstack(
            _summary(row, panel, S, B),
            _warning(panel),
            rx.cond(~panel["empty"], rx.fragment(_table(panel, S, B), _pages(panel, name, B))),
            _restores(panel),
            spacing="2",
            width="100%",
            margin_top="8px",
            padding="12px",
            background=rx.color("gray", 2),
            border=f"1px solid {rx.color('gray', 4)}",
            border_radius="var(--radius-3)",
            class_name="backups",
            data_service=name,
        ),
    )


def restore_dialog(S: Any, B: Any) -> rx.Component:
    """Confirms a restore; a deployment environment's also asks for its name, typed."""
    deployment = S.detail["kind"] == "deployment"
    return rx.alert_dialog.root(
        rx.alert_dialog.content(
            rx.alert_dialog.title("Restore ", rx.code(B.restore_service), " from a backup?"),
            rx.alert_dialog.description(
                "The database's current contents are backed up first, then replaced by ",
                B.restore_what,
                ". The replacement happens in one transaction: if it fails, the database is left as it was. "
                "Workloads keep running and see the restored data.",
                size="2",
            ),
            rx.cond(
                deployment,
                rx.callout.root(
                    rx.callout.icon(rx.icon("rocket", size=16)),
                    rx.callout.text(
                        S.detail["name"],
                        " is a deployment environment: only a team owner can replace its database.",
                    ),
                    color_scheme="amber",
                    size="1",
                    margin_top="12px",
                ),
            ),
            rx.cond(
                deployment,
                typed_confirmation(
                    S.detail["name"], B.restore_confirm, B.set_restore_confirm, id="restore-confirm-name"
                ),
            ),
            error_callout(B.restore_error, margin_top="12px", id="restore-error"),
            rx.hstack(
                rx.alert_dialog.cancel(rx.button("Cancel", variant="soft", color_scheme="gray")),
                rx.button(
                    rx.cond(B.busy == "restore", rx.spinner(size="2"), rx.icon("archive-restore", size=16)),
                    "Restore database",
                    color_scheme="orange",
                    on_click=B.restore,
                    disabled=(B.busy != "") | (deployment & (B.restore_confirm != S.detail["name"])),
                    id="confirm-restore",
                ),
                spacing="3",
                justify="end",
                margin_top="16px",
            ),
            max_width="480px",
        ),
        open=B.restore_open,
        on_open_change=B.set_restore_open,
    )
