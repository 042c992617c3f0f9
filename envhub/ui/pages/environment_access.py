"""The environment page's "Access" panel: who can reach it, sharing, agent tokens.

Its own substate (loaded with the page): the members of the owning team, the
environment's shares (with their role and expiry, lapsed ones marked), and,
for those allowed, a form to share it and a dialog to make an agent token
(shown once, as on ``/tokens``).
"""

from __future__ import annotations

from typing import Any

import reflex as rx

from envhub.domain.humanize import parse_id
from envhub.domain.policy import ShareRole
from envhub.domain.principals import AGENT_SCOPES as AGENT_SCOPE_SET
from envhub.domain.principals import Scope
from envhub.errors import EnvhubError
from envhub.services import identity_views as iv
from envhub.services import sharing, tokens
from envhub.services.inputs import share_expiry
from envhub.ui.components.common import dialog_actions, error_callout, form_field, section
from envhub.ui.feedback import NO_ERROR, ErrorView, error_toast, error_view
from envhub.ui.pages.tokens import new_token_dialog
from envhub.ui.shown_once import ShownOnce
from envhub.ui.state import AuthState

SHARE_ROLES = [role.value for role in ShareRole]
AGENT_SCOPES = [scope.value for scope in Scope if scope in AGENT_SCOPE_SET]
NEW_AGENT_TOKEN = ShownOnce("new_agent_token")


class EnvironmentAccessState(AuthState):
    team: str = ""
    members: list[iv.MemberAccess] = rx.field(default_factory=list)
    shares: list[iv.ShareRow] = rx.field(default_factory=list)
    can_share: bool = False
    can_agent: bool = False
    grantee_kind: str = "user"
    grantee: str = ""
    role: str = "viewer"
    expires: str = ""
    share_error: ErrorView = NO_ERROR
    agent_open: bool = False
    agent_name: str = ""
    agent_scopes: list[str] = rx.field(default_factory=lambda: ["read", "shell"])
    agent_error: ErrorView = NO_ERROR
    _environment_id: int = 0

    def _reload(self) -> None:
        if not self._environment_id:
            return
        try:
            with self._acting() as (session, actor):
                view = iv.access_overview(session=session, actor=actor, environment_id=self._environment_id)
        except EnvhubError:
            self.members, self.shares, self.can_share, self.can_agent = [], [], False, False
            return
        self.team, self.members, self.shares = view["team"], view["members"], view["shares"]
        self.can_share = view["permissions"]["can_share"]
        self.can_agent = view["permissions"]["can_agent"]

    @rx.event
    def load(self):
        if not self.signed_in:
            return None
        raw = str(self.router.page.params.get("environment_id", ""))
        self._environment_id = parse_id(raw)
        self.grantee, self.expires, self.share_error = "", "", NO_ERROR
        self._reload()
        return NEW_AGENT_TOKEN.forget()  # shown already, or another environment's

    @rx.event
    def set_grantee_kind(self, value: str) -> None:
        self.grantee_kind = value

    @rx.event
    def set_grantee(self, value: str) -> None:
        self.grantee, self.share_error = value, NO_ERROR

    @rx.event
    def set_role(self, value: str) -> None:
        self.role = value

    @rx.event
    def set_expires(self, value: str) -> None:
        self.expires = value

    @rx.event
    def share(self, _form: dict[str, Any] | None = None):
        try:
            with self._acting() as (session, actor):
                sharing.share_environment(
                    session=session,
                    actor=actor,
                    environment_id=self._environment_id,
                    role=self.role,
                    user=self.grantee if self.grantee_kind == "user" else None,
                    team=self.grantee if self.grantee_kind == "team" else None,
                    expires_at=share_expiry(self.expires),
                )
        except EnvhubError as exc:
            self.share_error = error_view(exc)
            return None
        shared_with, self.grantee, self.expires = self.grantee, "", ""
        self._reload()
        return rx.toast.success(f"Shared with {shared_with}")

    @rx.event
    def unshare(self, share_id: str):
        try:
            with self._acting() as (session, actor):
                sharing.revoke_share(session=session, actor=actor, share_id=parse_id(share_id))
        except EnvhubError as exc:
            return error_toast(error_view(exc))
        self._reload()
        return rx.toast.success("Access removed")

    @rx.event
    def set_agent_open(self, open_: bool) -> None:
        self.agent_open, self.agent_error = open_, NO_ERROR
        if open_:
            self.agent_name, self.agent_scopes = "", ["read", "shell"]

    @rx.event
    def set_agent_name(self, value: str) -> None:
        self.agent_name = value

    @rx.event
    def toggle_agent_scope(self, scope: str, checked: bool) -> None:
        chosen = [s for s in self.agent_scopes if s != scope]
        self.agent_scopes = sorted([*chosen, scope] if checked else chosen)

    @rx.event
    def create_agent_token(self, _form: dict[str, Any] | None = None):
        try:
            with self._acting() as (session, actor):
                new = tokens.create_agent_token(
                    session=session,
                    actor=actor,
                    environment_id=self._environment_id,
                    name=self.agent_name,
                    scopes=self.agent_scopes,
                    expires_in_days=30,
                )
        except EnvhubError as exc:
            self.agent_error = error_view(exc)
            return None
        self.agent_open = False
        return NEW_AGENT_TOKEN.show(new.token)


S = EnvironmentAccessState


def _share_row(row: rx.Var) -> rx.Component:
    return rx.hstack(
        rx.icon(rx.cond(row["kind"] == "team", "users", "user"), size=15, color=rx.color("gray", 10)),
        rx.text(row["grantee"], size="2", weight="medium", class_name="share-grantee"),
        rx.badge(row["role"], variant="soft", radius="full", class_name="share-role"),
        rx.cond(
            row["active"] != "",
            rx.text("until ", row["expires"], size="1", color_scheme="gray"),
            rx.badge("lapsed", color_scheme="gray", variant="outline"),
        ),
        rx.spacer(),
        rx.cond(
            S.can_share,
            rx.icon_button(
                rx.icon("x", size=14),
                on_click=S.unshare(row["id"]),
                size="1",
                variant="ghost",
                color_scheme="gray",
                aria_label="Remove access",
                class_name="unshare",
            ),
        ),
        align="center",
        spacing="2",
        width="100%",
        class_name="share-row",
    )


def _share_form() -> rx.Component:
    return rx.form(
        rx.flex(
            rx.select(
                ["user", "team"],
                value=S.grantee_kind,
                on_change=S.set_grantee_kind,
                id="share-kind",
                custom_attrs={"aria-label": "Share with"},
            ),
            rx.input(
                placeholder=rx.cond(S.grantee_kind == "user", "username or email", "team name"),
                aria_label=rx.cond(S.grantee_kind == "user", "Person (username or email)", "Team name"),
                value=S.grantee,
                on_change=S.set_grantee,
                id="share-grantee",
                name="share-grantee",
                flex="1",
                min_width="180px",
            ),
            rx.select(
                SHARE_ROLES,
                value=S.role,
                on_change=S.set_role,
                id="share-role",
                custom_attrs={"aria-label": "Share role"},
            ),
            rx.hstack(
                rx.el.label(rx.text("until", size="2", color_scheme="gray"), html_for="share-expires"),
                rx.input(
                    type="date",
                    value=S.expires,
                    on_change=S.set_expires,
                    id="share-expires",
                    name="share-expires",
                    title="Optional: access lapses after this day",
                ),
                align="center",
                spacing="2",
            ),
            rx.button(rx.icon("share-2", size=16), "Share", type="submit", id="share-submit"),
            gap="8px",
            wrap="wrap",
            width="100%",
        ),
        on_submit=S.share,
        width="100%",
    )


def _agent_dialog() -> rx.Component:
    return rx.dialog.root(
        rx.dialog.trigger(
            rx.button(rx.icon("bot", size=16), "Agent token", variant="soft", id="new-agent-token")
        ),
        rx.dialog.content(
            rx.dialog.title("Agent token for this environment"),
            rx.dialog.description(
                "An agent holding it acts with your access, on this environment only, for 30 days.",
                size="2",
                color_scheme="gray",
            ),
            rx.form(
                rx.vstack(
                    form_field(
                        "Name",
                        rx.input(
                            value=S.agent_name,
                            on_change=S.set_agent_name,
                            placeholder="coding-agent",
                            id="agent-name",
                            name="agent-name",
                        ),
                        required=True,
                    ),
                    form_field(
                        "Scopes",
                        rx.hstack(
                            *[
                                rx.hstack(
                                    rx.checkbox(
                                        checked=S.agent_scopes.contains(scope),
                                        on_change=lambda checked, scope=scope: S.toggle_agent_scope(
                                            scope, checked
                                        ),
                                        id=f"agent-scope-{scope}",
                                        name=f"agent-scope-{scope}",
                                    ),
                                    rx.el.label(rx.text(scope, size="2"), html_for=f"agent-scope-{scope}"),
                                    spacing="1",
                                )
                                for scope in AGENT_SCOPES
                            ],
                            spacing="4",
                        ),
                        group=True,
                        id="agent-scopes",
                    ),
                    error_callout(S.agent_error),
                    dialog_actions(rx.button("Create", type="submit", id="create-agent-token")),
                    spacing="3",
                ),
                on_submit=S.create_agent_token,
            ),
            max_width="460px",
        ),
        open=S.agent_open,
        on_open_change=S.set_agent_open,
    )


def access_panel() -> rx.Component:
    members = rx.flex(
        rx.foreach(
            S.members,
            lambda m: rx.badge(
                rx.icon("user", size=12),
                m["name"],
                rx.text.span(" · ", m["role"], opacity="0.7"),
                variant="surface",
                color_scheme="gray",
                radius="full",
            ),
        ),
        gap="6px",
        wrap="wrap",
    )
    return section(
        "Access",
        rx.text(
            "Everyone in team ",
            rx.code(S.team, variant="ghost"),
            " per their role:",
            size="2",
            color_scheme="gray",
        ),
        members,
        rx.divider(),
        rx.text("Shared with", size="2", weight="medium"),
        rx.cond(
            S.shares.length() > 0,
            rx.vstack(rx.foreach(S.shares, _share_row), spacing="2", width="100%", id="shares"),
            rx.text("Nobody outside the team.", size="2", color_scheme="gray", id="no-shares"),
        ),
        rx.cond(
            S.can_share, rx.vstack(_share_form(), error_callout(S.share_error), spacing="2", width="100%")
        ),
        new_token_dialog(NEW_AGENT_TOKEN),
        icon="shield",
        actions=rx.cond(S.can_agent, _agent_dialog()),
        id="access-panel",
    )
