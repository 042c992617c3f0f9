"""``/environments``: every environment the person can see, in every project and team, live.

The URL's query holds the filters (``?phase=failed&q=shop``), so a filtered
view can be linked and the back button steps through filters: changing a
filter navigates to the new URL, and the page loads from whatever URL it is
on. Pages after the first follow the service's cursor and are not in the URL
(a cursor is only meaningful next to the list it came from).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import reflex as rx

from envhub.errors import EnvhubError
from envhub.services.pages import page_label
from envhub.ui import views
from envhub.ui.components.common import empty_state, error_callout
from envhub.ui.components.environment_list import ANY, filter_bar, listing_table, phase_chips
from envhub.ui.components.layout import page_header, shell
from envhub.ui.feedback import NO_ERROR, ErrorView, error_view
from envhub.ui.live import LiveMixin
from envhub.ui.state import AuthState

# The query parameters this page keeps, in the order its links spell them.
QUERY_KEYS = ("q", "project", "team", "phase", "kind", "trigger", "creator", "deleted")
ROUTE = "/environments"


def environments_url(query: dict[str, str]) -> str:
    ordered = [(key, query[key]) for key in QUERY_KEYS if query.get(key)]
    return f"{ROUTE}?{urlencode(ordered)}" if ordered else ROUTE


class EnvironmentsState(LiveMixin, AuthState):
    rows: list[views.ListingRow] = rx.field(default_factory=list)
    total: int = 0
    visible_total: int = 0
    phase_counts: list[views.PhaseCount] = rx.field(default_factory=list)
    project_options: list[views.FilterOption] = rx.field(default_factory=list)
    team_options: list[views.FilterOption] = rx.field(default_factory=list)
    phase_options: list[views.FilterOption] = rx.field(default_factory=list)
    kind_options: list[views.FilterOption] = rx.field(default_factory=list)
    trigger_options: list[views.FilterOption] = rx.field(default_factory=list)
    creator_options: list[views.FilterOption] = rx.field(default_factory=list)
    # The filters as the URL has them (what the selects show), and whether any is set.
    filters: dict[str, str] = rx.field(default_factory=dict)
    filtering: bool = False
    search: str = ""
    next_cursor: str = ""
    has_prev: bool = False
    phase_total: int = 0  # the phase chips' sum: what the other filters leave
    page_label: str = ""
    loaded: bool = False
    load_error: ErrorView = NO_ERROR
    _cursor: str = ""  # where this page starts ("" for the first)
    _previous: list[str] = rx.field(default_factory=list)  # where the pages before it start
    _channels: list[str] = rx.field(default_factory=list)

    # -- loading -----------------------------------------------------------

    def _live_request(self) -> tuple[Any, list[str]]:
        return (self._who, tuple(sorted(self.filters.items())), self._cursor), self._channels

    @staticmethod
    def _live_read(query: Any) -> dict[str, Any]:
        who, filters, cursor = query
        return views.read_environments(who, query=dict(filters), cursor=cursor)

    def _live_apply(self, view: dict[str, Any]) -> None:
        options = view["options"]
        self.rows = view["rows"]
        self.total = view["total"]
        self.visible_total = view["visible_total"]
        self.phase_counts = view["phase_counts"]
        self.phase_total = sum(count["count"] for count in self.phase_counts)
        self.project_options = options["projects"]
        self.team_options = options["teams"]
        self.phase_options = options["phases"]
        self.kind_options = options["kinds"]
        self.trigger_options = options["triggers"]
        self.creator_options = options["creators"]
        self.next_cursor = view["next_cursor"]
        self._channels = view["channels"]
        offset = len(self._previous) * views.LISTING_PAGE_SIZE
        self.page_label = page_label(offset, len(self.rows), self.total)
        self.has_prev = bool(self._previous)
        self.loaded = True

    def _reload(self) -> None:
        try:
            self._live_apply(self._live_read(self._live_request()[0]))
            self.load_error = NO_ERROR
        except EnvhubError as exc:  # e.g. a hand-edited URL with phase=asleep
            self.rows, self.total, self.next_cursor, self.loaded = [], 0, "", True
            self.load_error = error_view(exc)

    @rx.event
    def load(self):
        if not self.signed_in:  # AuthState.sign_in, which ran first, is sending them to sign in
            return None
        params = self.router.url.query_parameters
        self.filters = {
            key: str(params[key]).strip() for key in QUERY_KEYS if str(params.get(key) or "").strip()
        }
        self.filtering = bool(self.filters)
        self.search = self.filters.get("q", "")
        self._cursor, self._previous = "", []
        self._reload()
        return EnvironmentsState.watch

    # -- filtering (each change is a navigation to the filtered URL) ---------

    def _go(self, query: dict[str, str]):
        return rx.redirect(environments_url(query), replace=True)

    def _with(self, key: str, value: str):
        query = {k: v for k, v in self.filters.items() if k != key}
        if value and value != ANY:
            query[key] = value
        return self._go(query)

    @rx.event
    def set_filter(self, key: str, value: str):
        return self._with(key, value)

    @rx.event
    def pick_phase(self, phase: str):
        """A phase chip: filter by its phase, or drop the filter when it is the one applied."""
        return self._with("phase", "" if self.filters.get("phase") == phase else phase)

    @rx.event
    def set_search(self, value: str):
        self.search = value
        return self._with("q", value.strip())

    @rx.event
    def clear_filters(self):
        self.search = ""
        return self._go({})

    # -- paging ------------------------------------------------------------

    @rx.event
    def next_page(self) -> None:
        if self.next_cursor:
            self._previous = [*self._previous, self._cursor]
            self._cursor = self.next_cursor
            self._reload()

    @rx.event
    def prev_page(self) -> None:
        if self._previous:
            self._cursor = self._previous[-1]
            self._previous = self._previous[:-1]
            self._reload()


S = EnvironmentsState


def page() -> rx.Component:
    nothing_yet = S.loaded & (S.visible_total == 0) & ~S.filtering & (S.load_error["code"] == "")
    return shell(
        page_header(
            "Environments",
            "Every environment you can see, in every project and team, as it changes.",
            rx.link(
                rx.button(rx.icon("folder-kanban", size=16), "Projects", variant="soft"),
                href="/",
                underline="none",
            ),
        ),
        error_callout(S.load_error, id="environments-error"),
        rx.cond(
            nothing_yet,
            empty_state(
                "boxes",
                "No environments yet",
                "Environments are started from a project: open one and click Create environment "
                "(or let a pull request or an agent start one). They all show up here.",
                rx.link(
                    rx.button(rx.icon("folder-kanban", size=16), "Go to projects"),
                    href="/",
                    underline="none",
                    id="go-to-projects",
                ),
            ),
            rx.vstack(
                rx.cond(S.load_error["code"] == "", phase_chips(S)),
                filter_bar(S),
                rx.cond(
                    S.loaded & (S.total == 0),
                    empty_state(
                        "search-x",
                        "No environments match",
                        "Nothing you can see matches these filters. "
                        "Try another search, or clear the filters.",
                        rx.button(
                            rx.icon("x", size=16),
                            "Clear filters",
                            on_click=S.clear_filters,
                            variant="soft",
                            id="clear-filters-empty",
                        ),
                    ),
                    listing_table(S),
                ),
                spacing="4",
                width="100%",
            ),
        ),
        crumbs=[("Environments", ROUTE)],
        active="environments",
    )
