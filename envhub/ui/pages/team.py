"""``/teams/[team_id]``: a team's members and their roles, and its open invitations.

Every change goes through ``services/teams.py``, which decides who may do it;
the page only hides controls the person could not use anyway.
"""

from __future__ import annotations

from typing import Any

import reflex as rx

from envhub.domain.humanize import parse_id
from envhub.domain.policy import TeamRole
from envhub.errors import EnvhubError, NotFound
from envhub.services import identity_views as iv
from envhub.services import teams
from envhub.ui.components.common import error_callout, not_found, section
from envhub.ui.components.layout import page_header, shell
from envhub.ui.feedback import NO_ERROR, ErrorView, error_toast, error_view, unexpected_view
from envhub.ui.state import AuthState

ROLES = [role.value for role in TeamRole]


class TeamState(AuthState):
    found: bool = True
    loaded: bool = False
    team_name: str = ""
    team_display: str = ""
    my_role: str = ""
    can_manage: bool = False
    can_own: bool = False
    members: list[iv.MemberRow] = rx.field(default_factory=list)
    invites: list[iv.InviteRow] = rx.field(default_factory=list)
    invite_email: str = ""
    invite_role: str = "member"
    invite_error: ErrorView = NO_ERROR
    team_href: str = ""
    _team_id: int = 0

    def _reload(self) -> None:
        with self._acting() as (session, actor):
            try:
                view = iv.team_overview(session=session, actor=actor, team_id=self._team_id)
            except NotFound:
                self.found, self.loaded = False, True
                return
        self.team_name, self.team_display, self.my_role = view["name"], view["display_name"], view["my_role"]
        self.can_manage, self.can_own = view["can_manage"], view["can_own"]
        self.members, self.invites = view["members"], view["invites"]
        self.found, self.loaded = True, True

    @rx.event
    def load(self) -> None:
        if not self.signed_in:
            return
        raw = str(
            self.router.url.query_parameters.get("team_id") or self.router.page.params.get("team_id", "")
        )
        self._team_id = parse_id(raw)
        self.team_href = f"/teams/{self._team_id}/costs"
        self.loaded, self.found, self.invite_error = False, bool(self._team_id), NO_ERROR
        if self._team_id:
            self._reload()
        else:
            self.loaded = True

    def _change(self, done: str, action: Any, **kwargs: Any):
        try:
            with self._acting() as (session, actor):
                action(session=session, actor=actor, **kwargs)
        except EnvhubError as exc:
            return error_toast(error_view(exc))
        except Exception as exc:
            return error_toast(unexpected_view(exc))
        self._reload()
        return rx.toast.success(done)

    @rx.event
    def change_role(self, user_id: str, role: str):
        return self._change(
            f"Role changed to {role}",
            teams.change_role,
            team_id=self._team_id,
            user_id=parse_id(user_id),
            role=role,
        )

    @rx.event
    def remove(self, user_id: str):
        return self._change(
            "Member removed", teams.remove_member, team_id=self._team_id, user_id=parse_id(user_id)
        )

    @rx.event
    def revoke_invite(self, invite_id: str):
        return self._change("Invitation revoked", teams.revoke_invite, invite_id=parse_id(invite_id))

    @rx.event
    def set_invite_email(self, value: str) -> None:
        self.invite_email, self.invite_error = value, NO_ERROR

    @rx.event
    def set_invite_role(self, value: str) -> None:
        self.invite_role = value

    @rx.event
    def invite(self, _form: dict[str, Any] | None = None):
        try:
            with self._acting() as (session, actor):
                row = teams.invite(
                    session=session,
                    actor=actor,
                    team_id=self._team_id,
                    email=self.invite_email,
                    role=self.invite_role,
                )
        except EnvhubError as exc:
            self.invite_error = error_view(exc)
            return None
        self.invite_email = ""
        self._reload()
        return rx.toast.success(f"{row.email} invited: they join when they first sign in")


# -- page ------------------------------------------------------------------------


def _role_badge(role: rx.Var) -> rx.Component:
    return rx.badge(
        role,
        variant="soft",
        radius="full",
        color_scheme=rx.match(role, ("owner", "indigo"), ("admin", "violet"), ("member", "green"), "gray"),
    )


def _member_row(row: rx.Var) -> rx.Component:
    S = TeamState
    # Only owners touch owners; admins manage the rest.
    editable = S.can_own | (S.can_manage & (row["role"] != "owner"))
    return rx.table.row(
        rx.table.row_header_cell(
            rx.hstack(
                rx.avatar(
                    fallback=row["username"].to(str)[0].upper(), size="2", radius="full", variant="soft"
                ),
                rx.vstack(
                    rx.text(
                        row["name"], rx.cond(row["is_me"] != "", " (you)", ""), weight="medium", size="2"
                    ),
                    rx.text(
                        row["username"],
                        rx.cond(row["email"] != "", " · " + row["email"].to(str), ""),
                        size="1",
                        color_scheme="gray",
                    ),
                    spacing="0",
                ),
                align="center",
                spacing="2",
            )
        ),
        rx.table.cell(
            rx.cond(
                editable,
                rx.box(
                    rx.select(
                        rx.cond(S.can_own, ROLES, ROLES[1:]),
                        value=row["role"],
                        on_change=lambda value: S.change_role(row["user_id"], value),
                        size="1",
                        custom_attrs={"aria-label": f"Role of {row['username']}"},
                    ),
                    class_name="member-role",
                ),
                _role_badge(row["role"]),
            )
        ),
        rx.table.cell(
            rx.cond(
                editable | (row["is_me"] != ""),
                rx.button(
                    rx.cond(row["is_me"] != "", "Leave", "Remove"),
                    on_click=S.remove(row["user_id"]),
                    size="1",
                    variant="soft",
                    color_scheme="red",
                    class_name="remove-member",
                ),
            ),
            text_align="right",
        ),
        align="center",
        class_name="member-row",
    )


def _invites() -> rx.Component:
    S = TeamState
    form = rx.form(
        rx.hstack(
            rx.input(
                placeholder="name@company.com",
                value=S.invite_email,
                on_change=S.set_invite_email,
                type="email",
                aria_label="Email address to invite",
                id="invite-email",
                name="invite-email",
                flex="1",
            ),
            rx.select(
                rx.cond(S.can_own, ROLES, ROLES[1:]),
                value=S.invite_role,
                on_change=S.set_invite_role,
                id="invite-role",
                custom_attrs={"aria-label": "Role of the invited person"},
            ),
            rx.button(rx.icon("mail-plus", size=16), "Invite", type="submit", id="send-invite"),
            spacing="2",
            width="100%",
        ),
        on_submit=S.invite,
        width="100%",
    )
    rows = rx.foreach(
        S.invites,
        lambda row: rx.hstack(
            rx.icon("mail", size=15, color=rx.color("gray", 10)),
            rx.text(row["email"], size="2", flex="1", class_name="invite-email"),
            _role_badge(row["role"]),
            rx.text("until ", row["expires"], size="1", color_scheme="gray"),
            rx.icon_button(
                rx.icon("x", size=14),
                on_click=S.revoke_invite(row["id"]),
                size="1",
                variant="ghost",
                color_scheme="gray",
                aria_label="Revoke invitation",
            ),
            align="center",
            spacing="2",
            width="100%",
        ),
    )
    return section(
        "Invitations",
        rx.text(
            "An invited address joins the team the first time it signs in.", size="2", color_scheme="gray"
        ),
        form,
        error_callout(S.invite_error),
        rx.cond(
            S.invites.length() > 0,
            rx.vstack(rows, spacing="2", width="100%", id="open-invites"),
            rx.text("No open invitations.", size="2", color_scheme="gray"),
        ),
        icon="mail-plus",
    )


def team_page() -> rx.Component:
    S = TeamState
    members = section(
        "Members",
        rx.table.root(
            rx.table.header(
                rx.table.row(
                    rx.table.column_header_cell("Person"),
                    rx.table.column_header_cell("Role", width="160px"),
                    rx.table.column_header_cell("", width="100px"),
                )
            ),
            rx.table.body(rx.foreach(S.members, _member_row)),
            variant="ghost",
            size="2",
            width="100%",
            id="members-table",
        ),
        icon="users",
    )
    roles = section(
        "What roles allow",
        rx.grid(
            *[
                rx.vstack(
                    _role_badge(rx.Var.create(role)),
                    rx.text(text, size="1", color_scheme="gray"),
                    spacing="1",
                )
                for role, text in (
                    ("owner", "Everything, including making others owners."),
                    ("admin", "Manage projects, secrets, sharing and members."),
                    ("member", "Create, redeploy, delete and shell into environments."),
                    ("viewer", "See projects, environments, logs and the audit trail."),
                )
            ],
            columns=rx.breakpoints(initial="1", sm="2", lg="4"),
            gap="16px",
            width="100%",
        ),
        icon="shield-check",
    )
    body = rx.fragment(
        page_header(
            S.team_display,
            rx.hstack(
                rx.code(S.team_name, variant="ghost"),
                rx.text("·", color_scheme="gray"),
                rx.text("your role: ", S.my_role, size="3", color_scheme="gray"),
                spacing="2",
            ),
            rx.link(
                rx.button(rx.icon("receipt", size=16), "Usage and cost", variant="soft"),
                href=S.team_href,
                id="team-costs-link",
            ),
        ),
        members,
        rx.cond(S.can_manage, _invites()),
        roles,
    )
    return shell(
        rx.cond(
            S.found,
            rx.cond(S.loaded, body, rx.center(rx.spinner(size="3"), padding="80px", width="100%")),
            not_found("Team", "/teams", "Back to teams"),
        ),
        crumbs=[("Teams", "/teams"), (rx.cond(S.team_display != "", S.team_display, "Team"), "")],
        active="teams",
    )
