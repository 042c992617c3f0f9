"""The environment page's release history and a release's dialog.

They take the panel's state class (``ui/pages/environment_releases.py``), so the
markup stays here and the handlers stay with the state.
"""

from __future__ import annotations

from typing import Any

import reflex as rx

from envhub.ui.components.common import dash_if_empty, error_callout, mono, pager, section, stat, stat_grid
from envhub.ui.components.releases import (
    approvals_list,
    diff_viewer,
    gate_list,
    objects_viewer,
    release_status,
)

MUTED = {"size": "1", "color_scheme": "gray"}


def _row(S: Any, row: rx.Var) -> rx.Component:
    return rx.table.row(
        rx.table.cell(
            rx.button(
                "#",
                row["number"],
                on_click=S.open_release(row["id"]),
                variant="ghost",
                size="2",
                weight="bold",
                aria_label="Release #" + row["number"].to_string(),  # type: ignore[operator]
                class_name="open-release",
            )
        ),
        rx.table.cell(
            rx.hstack(
                release_status(row["status"], row["tone"]),
                rx.cond(
                    row["id"] == S.runs,
                    rx.badge(rx.icon("play", size=11), "runs now", variant="outline", color_scheme="green"),
                ),
                spacing="2",
                align="center",
            )
        ),
        rx.table.cell(rx.text(row["trigger"], size="2")),
        rx.table.cell(rx.text(row["triggered_by"], size="2")),
        rx.table.cell(
            rx.hstack(
                rx.code(row["short_commit"], variant="ghost", size="2"),
                rx.cond(row["ref"] != "", rx.text(row["ref"], **MUTED)),
                spacing="2",
                align="center",
            )
        ),
        rx.table.cell(rx.text(dash_if_empty(row["chart"]), size="2")),
        rx.table.cell(
            rx.tooltip(
                rx.text(row["created"], size="2", color_scheme="gray", white_space="nowrap"),
                content=row["created_at"],
            )
        ),
        rx.table.cell(rx.text(dash_if_empty(row["took"]), size="2", color_scheme="gray")),
        align="center",
        class_name="release-row",
        data_status=row["status"],
        data_number=row["number"],
        data_running=rx.cond(row["id"] == S.runs, "true", "false"),
        cursor="pointer",
        _hover={"background": rx.color("gray", 2)},
    )


def releases_panel(S: Any) -> rx.Component:
    table = rx.box(
        rx.table.root(
            rx.table.header(
                rx.table.row(
                    *[
                        rx.table.column_header_cell(h)
                        for h in ("Release", "Status", "Trigger", "By", "Commit", "Chart", "When", "Took")
                    ]
                )
            ),
            rx.table.body(rx.foreach(S.rows, lambda row: _row(S, row))),
            variant="ghost",
            size="2",
            width="100%",
            id="releases-table",
        ),
        width="100%",
        overflow_x="auto",
    )
    empty = rx.vstack(
        rx.text("No release yet.", size="2", weight="medium"),
        rx.text(
            rx.cond(
                S.promote_from != "",
                "Releases arrive here when " + S.promote_from + " has run one, ready, and its rules pass.",
                "A merge to a deploy branch, a CI call or “Release a commit” on the Deployments page "
                "makes one.",
            ),
            size="2",
            color_scheme="gray",
        ),
        spacing="1",
        padding_y="12px",
        id="releases-empty",
    )
    return rx.cond(
        S.visible,
        section(
            "Releases",
            rx.cond(
                S.total > 0,
                rx.fragment(
                    table,
                    pager(
                        S.page_label,
                        has_prev=S.offset > 0,
                        has_next=S.has_next,
                        on_prev=S.prev_page,
                        on_next=S.next_page,
                    ),
                ),
                empty,
            ),
            release_dialog(S),
            icon="rocket",
            id="releases",
        ),
    )


def _workloads(S: Any) -> rx.Component:
    def workload(item: rx.Var) -> rx.Component:
        return rx.table.row(
            rx.table.cell(mono(item["name"])),
            rx.table.cell(rx.text(item["status"], size="2")),
            rx.table.cell(rx.text(dash_if_empty(item["reason"]), size="2", color_scheme="gray")),
            class_name="release-workload",
        )

    return rx.cond(
        S.workloads.length() > 0,
        rx.table.root(
            rx.table.header(
                rx.table.row(*[rx.table.column_header_cell(h) for h in ("Workload", "Status", "Reason")])
            ),
            rx.table.body(rx.foreach(S.workloads, workload)),
            variant="ghost",
            size="1",
            width="100%",
        ),
        rx.text("No workloads reported yet.", size="2", color_scheme="gray"),
    )


def _compare(S: Any) -> rx.Component:
    return rx.hstack(
        rx.el.label(rx.text("Compare with", size="2", weight="medium"), html_for="release-compare"),
        rx.select.root(
            rx.select.trigger(id="release-compare", aria_label="Compare with"),
            rx.select.content(
                rx.select.item("what runs now", value="running"),
                rx.foreach(S.choices, lambda c: rx.select.item(c["label"], value=c["id"])),
            ),
            value=S.against,
            on_change=S.compare,
            size="1",
        ),
        align="center",
        spacing="2",
    )


def _actions(S: Any) -> rx.Component:
    allowed = S.allowed
    release = S.release

    def busy_icon(what: str, icon: str) -> rx.Component:
        return rx.cond(S.busy == what, rx.spinner(size="2"), rx.icon(icon, size=15))

    promote = rx.foreach(
        S.promotes_to,
        lambda to: rx.button(
            rx.cond(S.busy == "promote-" + to, rx.spinner(size="2"), rx.icon("arrow-right", size=15)),
            "Promote to ",
            to,
            on_click=S.promote(to),
            disabled=S.busy != "",
            variant="soft",
            class_name="promote-release",
        ),
    )
    return rx.vstack(
        rx.cond(
            S.approve_note != "",
            rx.text(S.approve_note, size="2", color_scheme="gray", class_name="approve-note"),
        ),
        rx.cond(
            allowed["approve"],
            rx.hstack(
                rx.input(
                    value=S.comment,
                    on_change=S.set_comment,
                    placeholder="Comment (optional)",
                    aria_label="Approval comment",
                    id="approval-comment",
                    flex="1",
                ),
                rx.button(
                    busy_icon("approve", "check"),
                    "Approve",
                    on_click=S.approve,
                    disabled=S.busy != "",
                    color_scheme="green",
                    id="release-approve",
                ),
                width="100%",
                spacing="2",
            ),
        ),
        rx.hstack(
            rx.cond(
                allowed["cancel"],
                rx.button(
                    busy_icon("cancel", "x"),
                    "Cancel release",
                    on_click=S.cancel,
                    disabled=S.busy != "",
                    variant="soft",
                    color_scheme="gray",
                    id="release-cancel",
                ),
            ),
            rx.cond(
                allowed["rollback"],
                rx.button(
                    busy_icon("rollback", "undo-2"),
                    "Roll back to this",
                    on_click=S.rollback,
                    disabled=S.busy != "",
                    variant="soft",
                    color_scheme="amber",
                    id="release-rollback",
                ),
            ),
            rx.cond((release["status"] == "ready") & S.can_release, promote),
            spacing="2",
            wrap="wrap",
        ),
        spacing="2",
        width="100%",
    )


def release_dialog(S: Any) -> rx.Component:
    release = S.release
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title(
                rx.hstack(
                    rx.text(S.env_name, " release #", release["number"]),
                    release_status(release["status"], release["tone"]),
                    align="center",
                    spacing="3",
                )
            ),
            rx.dialog.description(
                dash_if_empty(release["message"]), size="2", color_scheme="gray", margin_bottom="12px"
            ),
            rx.vstack(
                error_callout(S.detail_error),
                stat_grid(
                    stat("Commit", mono(release["commit"])),
                    stat("Ref", rx.text(dash_if_empty(release["ref"]), size="2")),
                    stat("Trigger", rx.text(release["trigger"], " by ", release["triggered_by"], size="2")),
                    stat("Created", rx.text(release["created"], size="2")),
                    stat("Digest", mono(dash_if_empty(release["digest"]))),
                    stat("Chart", rx.text(dash_if_empty(release["chart"]), size="2")),
                    stat("Took", rx.text(dash_if_empty(release["took"]), size="2")),
                    stat(
                        "Approvals",
                        rx.cond(
                            S.approvals_needed > 0,
                            rx.text(
                                S.approvals.length(),
                                " of ",
                                S.approvals_needed,
                                " (",
                                S.approver_role,
                                "+)",
                                size="2",
                            ),
                            rx.text("none needed", size="2", color_scheme="gray"),
                        ),
                    ),
                ),
                _actions(S),
                rx.separator(size="4"),
                rx.heading("Gates", size="3", weight="medium"),
                gate_list(S.gates, id="release-gates"),
                rx.heading("Approvals", size="3", weight="medium"),
                approvals_list(S.approvals),
                rx.heading("Workloads", size="3", weight="medium"),
                _workloads(S),
                rx.hstack(
                    rx.heading("Changes", size="3", weight="medium"),
                    rx.spacer(),
                    _compare(S),
                    align="center",
                    width="100%",
                ),
                diff_viewer(
                    S.changes,
                    empty=rx.cond(
                        (S.against == "running") & (S.release["id"] == S.running_id),
                        "This is the release the environment runs: compare it with another one.",
                        rx.cond(
                            (S.against == "running") & (S.running_id == 0),
                            "Nothing runs yet: everything this release renders is new.",
                            "The same objects: nothing changes.",
                        ),
                    ),
                    id="release-changes",
                ),
                rx.heading("Rendered objects", size="3", weight="medium"),
                rx.cond(S.notes != "", rx.text(S.notes, size="1", color_scheme="gray")),
                objects_viewer(S.objects),
                rx.hstack(
                    rx.dialog.close(rx.button("Close", variant="soft", color_scheme="gray")),
                    justify="end",
                    width="100%",
                ),
                spacing="3",
                width="100%",
            ),
            max_width="920px",
            id="release-detail",
        ),
        open=S.detail_open,
        on_open_change=S.set_detail_open,
    )
