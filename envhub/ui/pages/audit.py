"""``/audit``: the audit log of my teams, filtered, exported, and its chain checked.

Filters and paging run through ``services/audit_log``, which limits what is
visible to the person's teams and own events, in read-only sessions; the
export link hands the same filters to ``/api/v1/audit/export`` (JSON lines).
Visiting the page only shows the last check's stored result: "Verify chain"
checks the events since the last checkpoint, "Full check" recomputes every
event's MAC, as ``envhub audit verify`` does.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlencode

import reflex as rx

from envhub.errors import EnvhubError
from envhub.services import audit_log
from envhub.services import identity_views as iv
from envhub.services.audit_log import AuditFilter
from envhub.services.inputs import optional_moment
from envhub.ui.components.badges import outcome_badge
from envhub.ui.components.common import error_callout, mono, pager
from envhub.ui.components.layout import page_header, shell
from envhub.ui.feedback import NO_ERROR, ErrorView, error_view
from envhub.ui.state import AuthState, acting_as

PAGE = 25
FILTERS = ("actor", "target", "action", "outcome", "since", "until")


class AuditState(AuthState):
    rows: list[iv.AuditEventRow] = rx.field(default_factory=list)
    total: int = 0
    offset: int = 0
    loaded: bool = False
    filters: dict[str, str] = rx.field(default_factory=lambda: dict.fromkeys(FILTERS, ""))
    actions: list[str] = rx.field(default_factory=list)
    load_error: ErrorView = NO_ERROR
    chain: iv.ChainStatus = iv.NO_CHAIN
    verifying: bool = False

    @rx.var
    def export_href(self) -> str:
        query = {key: value for key, value in self.filters.items() if value}
        return "/api/v1/audit/export" + (f"?{urlencode(query)}" if query else "")

    @rx.var
    def page_label(self) -> str:
        if self.total == 0:
            return "No events"
        return f"{self.offset + 1}–{self.offset + len(self.rows)} of {self.total}"

    def _filter(self) -> AuditFilter:
        f = self.filters
        return AuditFilter(
            actor=f.get("actor", "").strip(),
            target=f.get("target", "").strip(),
            action=f.get("action", "").strip(),
            outcome=f.get("outcome", "").strip(),
            since=optional_moment(f.get("since", "")),
            until=optional_moment(f.get("until", "")),
        )

    def _reload(self, *, with_chain: bool = False) -> None:
        try:
            with self._reading() as (session, actor):
                view = iv.audit_page(
                    session=session, actor=actor, filters=self._filter(), offset=self.offset, limit=PAGE
                )
                self.actions = audit_log.distinct_actions(session=session, actor=actor)
                if with_chain:
                    self.chain = iv.chain_overview(session=session, actor=actor)
        except EnvhubError as exc:
            self.load_error = error_view(exc)
            return
        self.rows = view["rows"]
        self.total, self.loaded, self.load_error = view["page"]["total"], True, NO_ERROR

    @rx.event
    def load(self) -> None:
        """The events and the last check's stored result; no check runs here."""
        if not self.signed_in:
            return
        self.offset, self.chain = 0, iv.NO_CHAIN
        self._reload(with_chain=True)

    @rx.event
    def set_filter(self, name: str, value: str) -> None:
        if name in FILTERS:
            self.filters = {**self.filters, name: value if value != "any" else ""}
            self.offset = 0
            self._reload()

    @rx.event
    def clear_filters(self) -> None:
        self.filters, self.offset = dict.fromkeys(FILTERS, ""), 0
        self._reload()

    @rx.event
    def next_page(self) -> None:
        if self.offset + PAGE < self.total:
            self.offset += PAGE
            self._reload()

    @rx.event
    def prev_page(self) -> None:
        self.offset = max(0, self.offset - PAGE)
        self._reload()

    @rx.event(background=True)
    async def verify(self, full: bool = False):
        async with self:
            if self.verifying:
                return
            self.verifying, who = True, self._who

        def check() -> iv.ChainStatus:
            with acting_as(who) as (session, actor):
                audit_log.check_chain(session=session, actor=actor, full=full)
                return iv.chain_overview(session=session, actor=actor)

        try:
            status = await asyncio.to_thread(check)
        except EnvhubError as exc:
            status = iv.ChainStatus(checked=True, ok=False, summary=exc.message, problems=[], when="")
        async with self:
            self.chain, self.verifying = status, False


S = AuditState


def _filter_input(
    name: str, placeholder: str, width: str = "150px", *, label: str = "", **props: object
) -> rx.Component:
    return rx.input(
        aria_label=label or placeholder,
        width=width,
        placeholder=placeholder,
        value=S.filters[name],
        on_change=lambda value: S.set_filter(name, value),
        debounce_timeout=300,
        size="2",
        id=f"filter-{name}",
        **props,
    )


def filters_bar() -> rx.Component:
    return rx.flex(
        _filter_input("actor", "Actor"),
        _filter_input("target", "Target"),
        rx.select(
            S.actions,
            placeholder="Action",
            value=S.filters["action"],
            on_change=lambda value: S.set_filter("action", value),
            id="filter-action",
            custom_attrs={"aria-label": "Action"},
        ),
        rx.select(
            ["any", "success", "failure"],
            placeholder="Outcome",
            value=S.filters["outcome"],
            on_change=lambda value: S.set_filter("outcome", value),
            id="filter-outcome",
            custom_attrs={"aria-label": "Outcome"},
        ),
        rx.tooltip(
            _filter_input("since", "From", width="196px", label="From (UTC)", type="datetime-local"),
            content="From (UTC)",
        ),
        rx.tooltip(
            _filter_input("until", "To", width="196px", label="To (UTC)", type="datetime-local"),
            content="To (UTC)",
        ),
        rx.button(
            rx.icon("x", size=14), "Clear", on_click=S.clear_filters, variant="soft", color_scheme="gray"
        ),
        gap="8px",
        wrap="wrap",
        width="100%",
        align="center",
    )


def chain_callout() -> rx.Component:
    ok = S.chain["ok"]
    return rx.callout.root(
        rx.callout.icon(
            rx.cond(
                S.verifying,
                rx.spinner(size="1"),
                rx.cond(
                    S.chain["checked"],
                    rx.cond(ok, rx.icon("shield-check", size=16), rx.icon("shield-alert", size=16)),
                    rx.icon("shield", size=16),
                ),
            )
        ),
        rx.vstack(
            rx.text(
                rx.cond(S.verifying, "Checking the audit chain…", S.chain["summary"]),
                size="2",
                weight="medium",
                id="chain-summary",
            ),
            rx.cond(S.chain["when"] != "", rx.text(S.chain["when"], size="1", id="chain-when")),
            rx.foreach(S.chain["problems"], lambda p: rx.text(p, size="1")),
            spacing="1",
        ),
        color_scheme=rx.cond(S.chain["checked"], rx.cond(ok, "green", "red"), "gray"),
        id="chain-status",
        width="100%",
    )


def event_row(row: rx.Var) -> rx.Component:
    return rx.table.row(
        rx.table.cell(rx.tooltip(rx.text(row["time"], size="2", white_space="nowrap"), content=row["stamp"])),
        rx.table.cell(
            rx.vstack(
                rx.text(row["actor"], size="2", weight="medium"),
                rx.text(
                    row["principal_type"],
                    rx.cond(row["source_ip"] != "", " · " + row["source_ip"].to(str), ""),
                    size="1",
                    color_scheme="gray",
                ),
                spacing="0",
            )
        ),
        rx.table.cell(mono(row["action"])),
        rx.table.cell(rx.text(row["target"], size="2", style={"overflow_wrap": "anywhere"})),
        rx.table.cell(
            rx.hstack(
                outcome_badge(row["outcome"]),
                rx.cond(row["error_code"] != "", rx.code(row["error_code"], variant="ghost", size="1")),
                spacing="2",
            )
        ),
        rx.table.cell(rx.text("#", row["seq"], size="1", color_scheme="gray")),
        class_name="audit-row",
        align="center",
    )


def page() -> rx.Component:
    table = rx.card(
        rx.table.root(
            rx.table.header(
                rx.table.row(
                    rx.table.column_header_cell("When", width="110px"),
                    rx.table.column_header_cell("Actor"),
                    rx.table.column_header_cell("Action"),
                    rx.table.column_header_cell("Target"),
                    rx.table.column_header_cell("Outcome"),
                    rx.table.column_header_cell("", width="60px"),
                )
            ),
            rx.table.body(rx.foreach(S.rows, event_row)),
            variant="ghost",
            size="2",
            width="100%",
            id="audit-table",
        ),
        rx.box(
            pager(
                S.page_label,
                has_prev=S.offset > 0,
                has_next=S.offset + PAGE < S.total,
                on_prev=S.prev_page,
                on_next=S.next_page,
            ),
            padding_top="12px",
        ),
        width="100%",
    )
    actions = [
        rx.button(
            rx.cond(S.verifying, rx.spinner(size="2"), rx.icon("shield-check", size=16)),
            "Verify chain",
            on_click=S.verify(False),
            disabled=S.verifying,
            variant="soft",
            id="verify-chain",
            title="Check the events written since the last intact check",
        ),
        rx.button(
            "Full check",
            on_click=S.verify(True),
            disabled=S.verifying,
            variant="soft",
            color_scheme="gray",
            id="verify-chain-full",
            title="Recompute every event's MAC from the first one",
        ),
        # A document navigation, not client-side routing: the browser downloads
        # the server's JSON lines with its cookie.
        rx.link(
            rx.button(rx.icon("download", size=16), "Export JSON lines"),
            href=S.export_href,
            reload_document=True,
            id="export-audit",
        ),
    ]
    return shell(
        page_header(
            "Audit log", "Every operation in your teams, who did it, from where, and how it ended.", *actions
        ),
        chain_callout(),
        error_callout(S.load_error),
        filters_bar(),
        table,
        crumbs=[("Audit log", "")],
        active="audit",
    )
