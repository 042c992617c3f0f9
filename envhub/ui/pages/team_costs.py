"""``/teams/[team_id]/costs``: a team's hours running and asleep, CPU and memory hours and the
estimated cost over this month or the last 30 days, and its environments costliest first.

Everything is computed by ``services/costs.py``; the page pages through it by cursor.
"""

from __future__ import annotations

import reflex as rx

from envhub.domain.humanize import parse_id
from envhub.errors import EnvhubError, NotFound
from envhub.services import costs
from envhub.ui.components.common import empty_state, not_found, section
from envhub.ui.components.layout import page_header, shell
from envhub.ui.state import AuthState

PAGE_SIZE = 25
WINDOWS = {"month": "This month", "30d": "Last 30 days"}


class TeamCostsState(AuthState):
    found: bool = True
    loaded: bool = False
    team_name: str = ""
    team_href: str = ""
    window: str = "month"
    period: str = ""
    total: str = ""
    total_cost: str = ""
    note: str = ""
    rows: list[dict[str, str]] = rx.field(default_factory=list)
    next_cursor: str = ""
    page_number: int = 1
    _cursors: list[str] = rx.field(default_factory=list)  # each page's cursor so far ("" first)
    _team_id: int = 0

    def _reload(self) -> None:
        cursor = self._cursors[-1] if self._cursors else ""
        with self._reading() as (session, actor):
            try:
                view = costs.team_costs(
                    session=session,
                    actor=actor,
                    team_id=self._team_id,
                    window_name=self.window,
                    cursor=cursor or None,
                    limit=PAGE_SIZE,
                )
            except NotFound:
                self.found, self.loaded = False, True
                return
            except EnvhubError as exc:
                self.found, self.loaded, self.note = False, True, exc.message
                return
        self.team_name = view["team"]
        self.period = f"{view['start'][:10]} to {view['end'][:16].replace('T', ' ')} UTC"
        total = view["total"]
        self.total = total["summary"]
        self.total_cost = "" if total["cost"] is None else f"{total['cost']:.2f} {total['currency']}"
        self.note = "" if view["priced"] else "No prices are set, so these are hours, not money."
        self.rows = [
            {
                "name": row["name"],
                "project": row["project"],
                "href": row["href"],
                "phase": row["phase"],
                "running": f"{row['figures']['running_hours']:.1f}",
                "asleep": f"{row['figures']['asleep_hours']:.1f}",
                "cpu": f"{row['figures']['cpu_hours']:.1f}",
                "memory": f"{row['figures']['memory_gib_hours']:.1f}",
                "cost": ""
                if row["figures"]["cost"] is None
                else f"{row['figures']['cost']:.2f} {row['figures']['currency']}",
            }
            for row in view["environments"]
        ]
        self.next_cursor = view["next_cursor"] or ""
        self.page_number = max(1, len(self._cursors))
        self.found, self.loaded = True, True

    @rx.event
    def load(self) -> None:
        if not self.signed_in:
            return
        self._team_id = parse_id(str(self.router.page.params.get("team_id", "")))
        self.team_href = f"/teams/{self._team_id}"
        self.loaded, self.found, self._cursors = False, bool(self._team_id), [""]
        if self._team_id:
            self._reload()
        else:
            self.loaded = True

    @rx.event
    def set_window(self, value: str | list[str]) -> None:
        chosen = value if isinstance(value, str) else (value[0] if value else "")
        self.window = chosen if chosen in WINDOWS else "month"
        self._cursors = [""]
        self._reload()

    @rx.event
    def next_page(self) -> None:
        if self.next_cursor:
            self._cursors = [*self._cursors, self.next_cursor]
            self._reload()

    @rx.event
    def first_page(self) -> None:
        self._cursors = [""]
        self._reload()


S = TeamCostsState

_COLUMNS = ("Environment", "Project", "Phase", "Running h", "Asleep h", "CPU-h", "GiB-h", "Cost")


def _row(row: rx.Var) -> rx.Component:
    return rx.table.row(
        rx.table.cell(rx.link(row["name"], href=row["href"])),
        rx.table.cell(row["project"]),
        rx.table.cell(row["phase"]),
        *[rx.table.cell(row[key]) for key in ("running", "asleep", "cpu", "memory", "cost")],
    )


def page() -> rx.Component:
    window = rx.segmented_control.root(
        *[rx.segmented_control.item(label, value=value) for value, label in WINDOWS.items()],
        value=S.window,
        on_change=S.set_window,
        id="costs-window",
    )
    table = rx.table.root(
        rx.table.header(rx.table.row(*[rx.table.column_header_cell(name) for name in _COLUMNS])),
        rx.table.body(rx.foreach(S.rows, _row)),
        variant="ghost",
        size="2",
        width="100%",
        id="team-costs-table",
    )
    pager = rx.hstack(
        rx.button("First page", on_click=S.first_page, variant="soft", disabled=S.page_number <= 1),
        rx.text("Page ", S.page_number, size="2", color_scheme="gray"),
        rx.button("Next page", on_click=S.next_page, variant="soft", disabled=S.next_cursor == ""),
        align="center",
        spacing="3",
    )
    body = rx.fragment(
        page_header(
            S.team_name,
            rx.text("Usage and cost · ", S.period, size="3", color_scheme="gray"),
            window,
        ),
        section(
            "Team total",
            rx.hstack(
                rx.text(S.total, size="3", id="team-costs-total"),
                rx.cond(S.total_cost != "", rx.badge(S.total_cost, size="2")),
                spacing="3",
                align="center",
                wrap="wrap",
            ),
            rx.cond(S.note != "", rx.text(S.note, size="2", color_scheme="gray")),
            icon="receipt",
        ),
        section(
            "Environments, costliest first",
            rx.cond(
                S.rows.length() > 0,
                rx.vstack(table, pager, spacing="3", width="100%"),
                empty_state(
                    "moon",
                    "Nothing ran in this window",
                    "No environment of this team was running or asleep in this window.",
                ),
            ),
            icon="server",
        ),
    )
    return shell(
        rx.cond(
            S.found,
            rx.cond(S.loaded, body, rx.center(rx.spinner(size="3"), padding="80px", width="100%")),
            not_found("Team", "/teams", "Back to teams"),
        ),
        crumbs=[("Teams", "/teams"), (S.team_name, S.team_href), ("Usage and cost", "")],
        active="teams",
    )
