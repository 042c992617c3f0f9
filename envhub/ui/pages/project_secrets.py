"""The project page's "Secrets" panel: names and dates, never values.

A value typed here goes to ``services/secrets.py`` (sealed with AES-GCM) and
the field is emptied at once: the browser never receives a stored value back,
because no view model carries one. Environments get them at their next deploy.
"""

from __future__ import annotations

from typing import Any

import reflex as rx

from envhub.domain.humanize import parse_id
from envhub.errors import EnvhubError
from envhub.services import identity_views as iv
from envhub.services import secrets
from envhub.ui.components.common import error_callout, section
from envhub.ui.feedback import NO_ERROR, ErrorView, error_toast, error_view
from envhub.ui.state import AuthState


class ProjectSecretsState(AuthState):
    rows: list[iv.SecretRow] = rx.field(default_factory=list)
    name: str = ""
    value: str = ""
    error: ErrorView = NO_ERROR
    visible: bool = False
    _project_id: int = 0

    def _reload(self) -> None:
        try:
            with self._acting() as (session, actor):
                rows = iv.secret_rows(session=session, actor=actor, project_id=self._project_id)
        except EnvhubError:
            self.rows, self.visible = [], False
            return
        self.rows, self.visible = rows, True

    @rx.event
    def load(self) -> None:
        if not self.signed_in:
            return
        raw = str(self.router.page.params.get("project_id", ""))
        self._project_id = parse_id(raw)
        self.name, self.value, self.error = "", "", NO_ERROR
        if self._project_id:
            self._reload()

    @rx.event
    def set_name(self, value: str) -> None:
        self.name, self.error = value.strip(), NO_ERROR

    @rx.event
    def set_value(self, value: str) -> None:
        self.value = value

    @rx.event
    def save(self, _form: dict[str, Any] | None = None):
        name, value = self.name, self.value
        self.value = ""  # never kept in the page's state longer than this event
        try:
            with self._acting() as (session, actor):
                secrets.set_secret(
                    session=session, actor=actor, project_id=self._project_id, name=name, value=value
                )
        except EnvhubError as exc:
            self.error = error_view(exc)
            return None
        self.name = ""
        self._reload()
        return rx.toast.success(f"Secret {name} saved; environments get it at their next deploy")

    @rx.event
    def delete(self, secret_id: str):
        try:
            with self._acting() as (session, actor):
                secrets.delete_secret(session=session, actor=actor, secret_id=parse_id(secret_id))
        except EnvhubError as exc:
            return error_toast(error_view(exc))
        self._reload()
        return rx.toast.success("Secret deleted")


S = ProjectSecretsState


def secrets_panel() -> rx.Component:
    rows = rx.foreach(
        S.rows,
        lambda row: rx.hstack(
            rx.icon("lock", size=14, color=rx.color("gray", 10)),
            rx.code(row["name"], variant="ghost", class_name="secret-name"),
            rx.text("••••••••", color_scheme="gray", size="2"),
            rx.spacer(),
            rx.text("updated ", row["updated"], size="1", color_scheme="gray"),
            rx.icon_button(
                rx.icon("trash-2", size=14),
                on_click=S.delete(row["id"]),
                size="1",
                variant="ghost",
                color_scheme="red",
                aria_label="Delete secret",
            ),
            align="center",
            spacing="2",
            width="100%",
            class_name="secret-row",
        ),
    )
    form = rx.form(
        rx.flex(
            rx.input(
                placeholder="NAME",
                value=S.name,
                on_change=S.set_name,
                id="secret-name",
                aria_label="Secret name",
                name="secret-name",
                style={"font_family": "var(--code-font-family)"},
                width="200px",
            ),
            rx.input(
                placeholder="value (write-only)",
                value=S.value,
                on_change=S.set_value,
                type="password",
                auto_complete="off",
                id="secret-value",
                aria_label="Secret value",
                name="secret-value",
                flex="1",
                min_width="200px",
            ),
            rx.button(rx.icon("lock", size=16), "Save secret", type="submit", id="save-secret"),
            gap="8px",
            wrap="wrap",
            width="100%",
        ),
        on_submit=S.save,
        width="100%",
    )
    return rx.cond(
        S.visible,
        section(
            "Secrets",
            rx.text(
                "Encrypted at rest and handed to environments as variables at deploy; values are never "
                "shown again.",
                size="2",
                color_scheme="gray",
            ),
            rx.cond(
                S.rows.length() > 0,
                rx.vstack(rows, spacing="2", width="100%", id="secrets"),
                rx.text("No secrets yet.", size="2", color_scheme="gray"),
            ),
            form,
            error_callout(S.error),
            icon="key-round",
        ),
    )
