"""``/tokens``: my personal access tokens and agent tokens.

A new token is shown once, in a dialog, and never again: the database only
keeps its digest, and only the open tab holds the token itself
(``ui/shown_once.py``), so a reload does not bring it back. Revoking takes
effect at once.
"""

from __future__ import annotations

from typing import Any

import reflex as rx

from envhub.domain.humanize import parse_id
from envhub.domain.principals import Scope
from envhub.errors import EnvhubError
from envhub.services import identity_views as iv
from envhub.services import tokens
from envhub.ui.components.common import dialog_actions, empty_state, error_callout, form_field, mono, section
from envhub.ui.components.layout import page_header, shell
from envhub.ui.feedback import NO_ERROR, ErrorView, error_toast, error_view
from envhub.ui.shown_once import ShownOnce
from envhub.ui.state import AuthState

SCOPES: list[tuple[str, str]] = [
    (Scope.read.value, "See projects, environments, logs, audit; watch terminals"),
    (Scope.write.value, "Create and change projects and environments, set secrets"),
    (Scope.shell.value, "Type in environment terminals, get environment credentials"),
    (Scope.admin.value, "Delete, share, manage team members"),
    (Scope.deploy.value, "Release commits to deployment environments (for CI), nothing else"),
]
EXPIRY_CHOICES = ["7", "30", "90", "365"]
NEW_TOKEN = ShownOnce("new_token")


class TokensState(AuthState):
    rows: list[iv.TokenRow] = rx.field(default_factory=list)
    loaded: bool = False
    dialog_open: bool = False
    name: str = ""
    scopes: list[str] = rx.field(default_factory=lambda: ["read"])
    days: str = "30"
    form_error: ErrorView = NO_ERROR

    def _reload(self) -> None:
        with self._acting() as (session, actor):
            self.rows = iv.token_rows(session=session, actor=actor)
        self.loaded = True

    @rx.event
    def load(self):
        if not self.signed_in:
            return None
        self._reload()
        return NEW_TOKEN.forget()  # shown already

    @rx.event
    def set_dialog(self, open_: bool) -> None:
        self.dialog_open = open_
        if open_:
            self.name, self.scopes, self.days, self.form_error = "", ["read"], "30", NO_ERROR

    @rx.event
    def set_name(self, value: str) -> None:
        self.name = value

    @rx.event
    def set_days(self, value: str) -> None:
        self.days = value

    @rx.event
    def toggle_scope(self, scope: str, checked: bool) -> None:
        chosen = [s for s in self.scopes if s != scope]
        self.scopes = sorted([*chosen, scope] if checked else chosen)

    @rx.event
    def create(self, _form: dict[str, Any] | None = None):
        try:
            with self._acting() as (session, actor):
                new = tokens.create_personal_token(
                    session=session,
                    actor=actor,
                    name=self.name,
                    scopes=self.scopes,
                    expires_in_days=parse_id(self.days),
                )
        except EnvhubError as exc:
            self.form_error = error_view(exc)
            return None
        self.dialog_open = False
        self._reload()
        return NEW_TOKEN.show(new.token)

    @rx.event
    def revoke(self, token_id: str):
        try:
            with self._acting() as (session, actor):
                row = tokens.revoke_token(session=session, actor=actor, token_id=parse_id(token_id))
        except EnvhubError as exc:
            return error_toast(error_view(exc))
        self._reload()
        return rx.toast.success(f"Token {row.name} revoked")


S = TokensState


def _scope_choice(scope: str, text: str) -> rx.Component:
    return rx.hstack(
        rx.checkbox(
            checked=S.scopes.contains(scope),
            on_change=lambda checked: S.toggle_scope(scope, checked),
            id=f"scope-{scope}",
            name=f"scope-{scope}",
            aria_describedby=f"scope-{scope}-help",
        ),
        rx.vstack(
            rx.el.label(rx.text(scope, size="2", weight="medium"), html_for=f"scope-{scope}"),
            rx.text(text, size="1", color_scheme="gray", id=f"scope-{scope}-help"),
            spacing="0",
        ),
        align="start",
        spacing="2",
    )


def create_dialog() -> rx.Component:
    return rx.dialog.root(
        rx.dialog.trigger(rx.button(rx.icon("plus", size=16), "New token", id="new-token")),
        rx.dialog.content(
            rx.dialog.title("New personal access token"),
            rx.dialog.description(
                "For scripts and the CLI. It acts as you, narrowed to the scopes you pick.",
                size="2",
                color_scheme="gray",
            ),
            rx.form(
                rx.vstack(
                    form_field(
                        "Name",
                        rx.input(
                            value=S.name,
                            on_change=S.set_name,
                            placeholder="ci-deploy",
                            id="token-name",
                            name="token-name",
                        ),
                        required=True,
                    ),
                    form_field(
                        "Scopes",
                        rx.vstack(*[_scope_choice(s, t) for s, t in SCOPES], spacing="2"),
                        group=True,
                        id="token-scopes",
                    ),
                    form_field(
                        "Expires after",
                        rx.select(EXPIRY_CHOICES, value=S.days, on_change=S.set_days, id="token-days"),
                        help_text="days",
                    ),
                    error_callout(S.form_error),
                    dialog_actions(rx.button("Create token", type="submit", id="create-token")),
                    spacing="3",
                ),
                on_submit=S.create,
            ),
            max_width="480px",
        ),
        open=S.dialog_open,
        on_open_change=S.set_dialog,
    )


def new_token_dialog(new_token: ShownOnce) -> rx.Component:
    """Shows a freshly made token once (also used for agent tokens); closing it drops the token."""
    token = new_token.value
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title("Copy your new token now"),
            rx.dialog.description(
                "envhub keeps only a digest of it: once this dialog closes, nobody can show it again.",
                size="2",
                color_scheme="gray",
            ),
            rx.vstack(
                rx.box(
                    mono(token, id="new-token-value"),
                    padding="12px",
                    width="100%",
                    background=rx.color("gray", 3),
                    border_radius="var(--radius-3)",
                ),
                rx.hstack(
                    rx.button(
                        rx.icon("copy", size=16),
                        "Copy",
                        variant="soft",
                        on_click=[rx.set_clipboard(token), rx.toast.success("Token copied")],
                    ),
                    rx.dialog.close(rx.button("Done", id="token-done")),
                    justify="end",
                    spacing="2",
                    width="100%",
                ),
                spacing="3",
                padding_top="8px",
            ),
            max_width="560px",
        ),
        open=new_token.shown,
        on_open_change=new_token.dismiss,
    )


def token_row(row: rx.Var) -> rx.Component:
    return rx.table.row(
        rx.table.row_header_cell(
            rx.vstack(
                rx.text(row["name"], weight="medium", size="2"),
                rx.hstack(
                    rx.code(row["hint"], variant="ghost", size="1"),
                    rx.cond(
                        row["environment"] != "",
                        rx.badge(
                            "agent: ", row["environment"], variant="soft", color_scheme="amber", size="1"
                        ),
                    ),
                    spacing="2",
                ),
                spacing="1",
            )
        ),
        rx.table.cell(rx.text(row["scopes"], size="2")),
        rx.table.cell(
            rx.tooltip(
                rx.text(row["last_used"], size="2", color_scheme="gray"),
                content=rx.cond(row["last_used_stamp"] != "", row["last_used_stamp"], "never used"),
            )
        ),
        rx.table.cell(rx.text(row["expires"], size="2", color_scheme="gray")),
        rx.table.cell(
            rx.button(
                "Revoke",
                on_click=S.revoke(row["id"]),
                size="1",
                variant="soft",
                color_scheme="red",
                class_name="revoke-token",
            ),
            text_align="right",
        ),
        align="center",
        class_name="token-row",
    )


def page() -> rx.Component:
    table = rx.card(
        rx.table.root(
            rx.table.header(
                rx.table.row(
                    rx.table.column_header_cell("Token"),
                    rx.table.column_header_cell("Scopes"),
                    rx.table.column_header_cell("Last used"),
                    rx.table.column_header_cell("Expires"),
                    rx.table.column_header_cell(""),
                )
            ),
            rx.table.body(rx.foreach(S.rows, token_row)),
            variant="ghost",
            size="2",
            width="100%",
            id="tokens-table",
        ),
        width="100%",
    )
    cli = section(
        "Signing in the CLI",
        rx.text(
            "The CLI signs in through your browser: it shows a code, you confirm it at ",
            rx.link("/device", href="/device"),
            ", and it gets a token listed here.",
            size="2",
            color_scheme="gray",
        ),
        icon="terminal",
    )
    return shell(
        page_header(
            "Tokens", "Tokens let programs act for you. Each has scopes and an expiry.", create_dialog()
        ),
        rx.cond(
            S.loaded & (S.rows.length() == 0),
            empty_state("key-round", "No tokens", "Create one for a script, or sign in the CLI."),
            table,
        ),
        cli,
        new_token_dialog(NEW_TOKEN),
        crumbs=[("Tokens", "")],
        active="tokens",
    )
