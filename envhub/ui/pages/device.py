"""``/device``: confirm a device sign-in (RFC 8628), e.g. ``envhub login`` in a terminal.

The person compares the code their terminal shows with the one here, sees
what the device asks for, and approves or denies; approving issues a personal
access token to that device (``services/device.py``).
"""

from __future__ import annotations

import reflex as rx

from envhub.errors import EnvhubError
from envhub.services import device
from envhub.ui.components.common import error_callout, form_field, section
from envhub.ui.components.layout import page_header, shell
from envhub.ui.feedback import NO_ERROR, ErrorView, error_view
from envhub.ui.state import AuthState


class DeviceState(AuthState):
    code: str = ""
    client: str = ""
    scopes: str = ""
    found: bool = False
    done: str = ""  # approved | denied
    error: ErrorView = NO_ERROR

    @rx.event
    def load(self) -> None:
        if not self.signed_in:
            return
        self.code = str(self.router.url.query_parameters.get("code", ""))[:20]
        self.found, self.done, self.error = False, "", NO_ERROR
        if self.code:
            self._look_up()

    def _look_up(self) -> None:
        try:
            with self._acting() as (session, actor):
                row = device.pending(session, actor=actor, user_code=self.code)
                info = device.describe(session, row)
        except EnvhubError as exc:
            self.found, self.error = False, error_view(exc)
            return
        self.code, self.client, self.scopes, self.found, self.error = (
            info["user_code"],
            info["client"],
            info["scopes"],
            True,
            NO_ERROR,
        )

    @rx.event
    def set_code(self, value: str) -> None:
        self.code = value.upper()[:20]

    @rx.event
    def look_up(self, _form: dict[str, str] | None = None) -> None:
        self._look_up()

    @rx.event
    def decide(self, approve: bool) -> None:
        try:
            with self._acting() as (session, actor):
                if approve:
                    device.approve(session, actor=actor, user_code=self.code)
                else:
                    device.deny(session, actor=actor, user_code=self.code)
        except EnvhubError as exc:
            self.error = error_view(exc)
            return
        self.done, self.found = ("approved" if approve else "denied"), False


S = DeviceState


def page() -> rx.Component:
    enter = rx.form(
        rx.vstack(
            form_field(
                "Code shown by your terminal",
                rx.input(
                    value=S.code,
                    on_change=S.set_code,
                    placeholder="BCDF-GHJK",
                    size="3",
                    id="device-code",
                    name="device-code",
                    style={"letter_spacing": "0.15em", "font_family": "var(--code-font-family)"},
                ),
            ),
            rx.button("Continue", type="submit", id="device-continue"),
            spacing="3",
            align="start",
        ),
        on_submit=S.look_up,
    )
    confirm = rx.vstack(
        rx.text(
            rx.text.strong(S.client),
            " wants to sign in as you with these scopes: ",
            rx.code(S.scopes, variant="ghost"),
            size="3",
        ),
        rx.text(
            "Only continue if you started this yourself and the codes match.", size="2", color_scheme="amber"
        ),
        rx.hstack(
            rx.button(rx.icon("check", size=16), "Approve", on_click=S.decide(True), id="device-approve"),
            rx.button("Deny", on_click=S.decide(False), variant="soft", color_scheme="red", id="device-deny"),
            spacing="2",
        ),
        spacing="3",
        id="device-request",
    )
    result = rx.callout.root(
        rx.callout.icon(rx.icon("circle-check", size=16)),
        rx.callout.text(
            rx.cond(
                S.done == "approved",
                "Approved: your terminal receives its token now. You can close this tab.",
                "Denied: the device gets nothing.",
            )
        ),
        color_scheme=rx.cond(S.done == "approved", "green", "gray"),
        id="device-result",
    )
    return shell(
        page_header("Sign in a device", "Confirm a sign-in started by the envhub CLI or another device."),
        section(
            "Device code",
            rx.cond(S.done != "", result, rx.cond(S.found, confirm, enter)),
            error_callout(S.error),
            icon="smartphone",
        ),
        crumbs=[("Device sign-in", "")],
        active="tokens",
    )
