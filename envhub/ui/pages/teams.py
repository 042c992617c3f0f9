"""``/teams``: the teams I belong to, and a new team (of which I become the owner)."""

from __future__ import annotations

from typing import Any

import reflex as rx

from envhub.domain.policy import TeamRole
from envhub.errors import EnvhubError
from envhub.services import identity_views as iv
from envhub.services import teams
from envhub.ui.components.common import dialog_actions, empty_state, error_callout, form_field
from envhub.ui.components.layout import page_header, shell
from envhub.ui.feedback import NO_ERROR, ErrorView, error_view
from envhub.ui.state import AuthState

ROLES = [role.value for role in TeamRole]


class TeamsState(AuthState):
    rows: list[iv.TeamRow] = rx.field(default_factory=list)
    loaded: bool = False
    dialog_open: bool = False
    name: str = ""
    display: str = ""
    form_error: ErrorView = NO_ERROR

    @rx.event
    def load(self) -> None:
        if not self.signed_in:
            return
        with self._acting() as (session, actor):
            self.rows = iv.team_rows(session=session, actor=actor)
        self.loaded = True

    @rx.event
    def set_dialog(self, open_: bool) -> None:
        self.dialog_open, self.name, self.display, self.form_error = open_, "", "", NO_ERROR

    @rx.event
    def set_name(self, value: str) -> None:
        self.name = value.strip().lower()

    @rx.event
    def set_display(self, value: str) -> None:
        self.display = value

    @rx.event
    def create(self, _form: dict[str, Any] | None = None):
        try:
            with self._acting() as (session, actor):
                team = teams.create_team(
                    session=session, actor=actor, name=self.name, display_name=self.display
                )
        except EnvhubError as exc:
            self.form_error = error_view(exc)
            return None
        self.dialog_open = False
        return [rx.toast.success(f"Team {team.name} created"), rx.redirect(f"/teams/{team.id}")]


# -- pages -----------------------------------------------------------------------


def _create_dialog() -> rx.Component:
    S = TeamsState
    return rx.dialog.root(
        rx.dialog.trigger(rx.button(rx.icon("plus", size=16), "New team", id="new-team")),
        rx.dialog.content(
            rx.dialog.title("New team"),
            rx.dialog.description(
                "You become its owner; invite others from its page.", size="2", color_scheme="gray"
            ),
            rx.form(
                rx.vstack(
                    form_field(
                        "Name",
                        rx.input(
                            value=S.name,
                            on_change=S.set_name,
                            placeholder="platform",
                            id="team-name",
                            name="team-name",
                        ),
                        help_text="Lower-case letters, digits and '-'; used in URLs and namespaces.",
                        required=True,
                    ),
                    form_field(
                        "Display name",
                        rx.input(
                            value=S.display,
                            on_change=S.set_display,
                            placeholder="Platform team",
                            id="team-display-name",
                            name="team-display-name",
                        ),
                    ),
                    error_callout(S.form_error),
                    dialog_actions(rx.button("Create team", type="submit", id="create-team")),
                    spacing="3",
                ),
                on_submit=S.create,
            ),
            max_width="440px",
        ),
        open=S.dialog_open,
        on_open_change=S.set_dialog,
    )


def _team_card(row: rx.Var) -> rx.Component:
    return rx.link(
        rx.card(
            rx.hstack(
                rx.center(
                    rx.icon("users", size=18, color=rx.color("accent", 11)),
                    width="40px",
                    height="40px",
                    border_radius="var(--radius-3)",
                    background=rx.color("accent", 3),
                ),
                rx.vstack(
                    rx.text(row["display_name"], weight="medium", size="3"),
                    rx.text(row["name"], " · ", row["members"], " member(s)", size="1", color_scheme="gray"),
                    spacing="0",
                    flex="1",
                ),
                rx.badge(row["role"], variant="soft", radius="full"),
                align="center",
                spacing="3",
            ),
            class_name="team-card",
        ),
        href=row["href"],
        underline="none",
    )


def teams_page() -> rx.Component:
    S = TeamsState
    return shell(
        page_header(
            "Teams",
            "Teams own projects; their members' roles decide what each person may do.",
            _create_dialog(),
        ),
        rx.cond(
            S.loaded & (S.rows.length() == 0),
            empty_state(
                "users",
                "You are in no team yet",
                "Create one, or ask a team's owner to invite your email address.",
            ),
            rx.grid(
                rx.foreach(S.rows, _team_card),
                columns=rx.breakpoints(initial="1", md="2"),
                gap="12px",
                width="100%",
            ),
        ),
        crumbs=[("Teams", "")],
        active="teams",
    )
