"""The project page's "GitHub" panel: connect the repository, its pull-request policy, the webhook.

Credentials typed here go to ``services/github.py`` (checked with GitHub,
then sealed) and the fields are emptied at once; no view model carries them
back. The webhook secret is shown once, right after connect or rotate, with
a copy button: only the open tab holds it (``ui/shown_once.py``), so neither
a reload nor the next load brings it back.
"""

from __future__ import annotations

from typing import Any

import reflex as rx

from envhub.domain.humanize import parse_id
from envhub.errors import EnvhubError, GithubNotConnected
from envhub.services import github
from envhub.services.github import GithubConnectionView
from envhub.ui.components.common import error_callout, section
from envhub.ui.feedback import NO_ERROR, ErrorView, error_toast, error_view
from envhub.ui.shown_once import ShownOnce
from envhub.ui.state import AuthState

EMPTY = GithubConnectionView(
    project_id=0, repository="", repository_url="", api_url="", auth="", app_id=None, installation_id=None,
    pull_requests=True, drafts=False, opt_in_label="", opt_out_label="", push_branches=[], check_runs=True,
    webhook_url="", events=[], verified="", verified_at="", last_error="", updated_at="",
)  # fmt: skip


_FIELDS = frozenset(
    {"repository", "api_url", "auth", "app_id", "installation_id", "private_key", "token",
     "opt_in_label", "opt_out_label", "push_branches", "pull_requests", "drafts", "check_runs"}
)  # fmt: skip

WEBHOOK_SECRET = ShownOnce("webhook_secret")


def _number(text: str) -> int | None:
    """A typed id (None when it is not a number: the use case says which field)."""
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else None


class ProjectGithubState(AuthState):
    connection: GithubConnectionView = EMPTY
    connected: bool = False
    visible: bool = False
    # The connect form (credentials are emptied as soon as they are sent).
    repository: str = ""
    api_url: str = "https://api.github.com"
    auth: str = "app"
    app_id: str = ""
    installation_id: str = ""
    private_key: str = ""
    token: str = ""
    # The policy form.
    pull_requests: bool = True
    drafts: bool = False
    opt_in_label: str = ""
    opt_out_label: str = ""
    push_branches: str = ""
    check_runs: bool = True
    webhook_url: str = ""
    events: str = ""
    error: ErrorView = NO_ERROR
    _project_id: int = 0

    def _show(self, view: GithubConnectionView) -> None:
        self.connection, self.connected = view, True
        self.pull_requests, self.drafts = view["pull_requests"], view["drafts"]
        self.opt_in_label, self.opt_out_label = view["opt_in_label"], view["opt_out_label"]
        self.push_branches = ", ".join(view["push_branches"])
        self.check_runs = view["check_runs"]
        self.webhook_url, self.events = view["webhook_url"], ", ".join(view["events"])

    def _reload(self) -> None:
        try:
            with self._acting() as (session, actor):
                view = github.github_connection(session=session, actor=actor, project_id=self._project_id)
        except GithubNotConnected:
            self.connection, self.connected, self.visible = EMPTY, False, True
            return
        except EnvhubError:
            self.visible = False
            return
        self.visible = True
        self._show(view)

    @rx.event
    def load(self):
        if not self.signed_in:
            return None
        self._project_id = parse_id(str(self.router.page.params.get("project_id", "")))
        self.private_key, self.token, self.error = "", "", NO_ERROR
        if self._project_id:
            self._reload()
        return WEBHOOK_SECRET.forget()  # shown already, or another project's

    @rx.event
    def set_field(self, field: str, value: Any) -> None:
        if field in _FIELDS:
            setattr(self, field, value)
            self.error = NO_ERROR

    @rx.event
    def connect(self, _form: dict[str, Any] | None = None):
        key, token = self.private_key, self.token
        self.private_key, self.token = "", ""  # never kept in the page's state longer than this event
        try:
            with self._acting() as (session, actor):
                answer = github.connect_github(
                    session=session,
                    actor=actor,
                    project_id=self._project_id,
                    repository=self.repository,
                    auth=self.auth,
                    api_url=self.api_url,
                    app_id=_number(self.app_id) if self.auth == "app" else None,
                    installation_id=_number(self.installation_id) if self.auth == "app" else None,
                    private_key=key if self.auth == "app" else "",
                    token=token if self.auth == "token" else "",
                )
        except EnvhubError as exc:
            self.error = error_view(exc)
            return None
        self.visible = True
        self._show(answer["connection"])
        return [
            WEBHOOK_SECRET.show(answer["webhook_secret"]),
            rx.toast.success(f"Connected to {answer['connection']['repository']}"),
        ]

    @rx.event
    def save_policy(self, _form: dict[str, Any] | None = None):
        patterns = [part.strip() for part in self.push_branches.replace("\n", ",").split(",") if part.strip()]
        try:
            with self._acting() as (session, actor):
                view = github.update_github_policy(
                    session=session,
                    actor=actor,
                    project_id=self._project_id,
                    changes={
                        "pull_requests": self.pull_requests,
                        "drafts": self.drafts,
                        "opt_in_label": self.opt_in_label,
                        "opt_out_label": self.opt_out_label,
                        "push_branches": patterns,
                        "check_runs": self.check_runs,
                    },
                )
        except EnvhubError as exc:
            self.error = error_view(exc)
            return None
        self.error = NO_ERROR
        self._show(view)
        return rx.toast.success("Pull-request policy saved")

    @rx.event
    def rotate(self):
        try:
            with self._acting() as (session, actor):
                answer = github.rotate_webhook_secret(
                    session=session, actor=actor, project_id=self._project_id
                )
        except EnvhubError as exc:
            return error_toast(error_view(exc))
        return [
            WEBHOOK_SECRET.show(answer["webhook_secret"]),
            rx.toast.success("New webhook secret made; paste it into the repository's webhook"),
        ]

    @rx.event
    def disconnect(self):
        try:
            with self._acting() as (session, actor):
                github.disconnect_github(session=session, actor=actor, project_id=self._project_id)
        except EnvhubError as exc:
            return error_toast(error_view(exc))
        self._reload()
        return [WEBHOOK_SECRET.forget(), rx.toast.success("Disconnected from GitHub")]


S = ProjectGithubState


def _labelled(label: str, field_id: str, control: rx.Component, help_text: str = "") -> rx.Component:
    return rx.vstack(
        rx.el.label(rx.text(label, size="2", weight="medium"), html_for=field_id),
        control,
        *([rx.text(help_text, size="1", color_scheme="gray")] if help_text else []),
        spacing="1",
        width="100%",
    )


def _input(label: str, field: str, value: rx.Var, help_text: str = "", **props: Any) -> rx.Component:
    field_id = f"github-{field.replace('_', '-')}"
    control = rx.input(
        value=value,
        on_change=lambda v: S.set_field(field, v),
        id=field_id,
        name=field_id,
        aria_label=label,
        width="100%",
        **props,
    )
    return _labelled(label, field_id, control, help_text)


def _switch(label: str, field: str, value: rx.Var) -> rx.Component:
    field_id = f"github-{field.replace('_', '-')}"
    return rx.hstack(
        rx.switch(
            checked=value,
            on_change=lambda v: S.set_field(field, v),
            id=field_id,
            name=field_id,
            aria_label=label,
        ),
        rx.el.label(rx.text(label, size="2"), html_for=field_id),
        align="center",
        spacing="2",
    )


def _secret_once() -> rx.Component:
    return rx.cond(
        WEBHOOK_SECRET.shown,
        rx.callout.root(
            rx.callout.icon(rx.icon("key-round", size=16)),
            rx.vstack(
                rx.text(
                    "Add a webhook to the repository (Settings → Webhooks) with these values. "
                    "Copy the secret now: envhub will not show it again.",
                    size="2",
                    weight="medium",
                ),
                rx.text("Payload URL: ", rx.code(S.webhook_url), size="2"),
                rx.text("Content type: ", rx.code("application/json"), size="2"),
                rx.text("Events: ", rx.code(S.events), size="2"),
                rx.hstack(
                    rx.text("Secret: ", size="2"),
                    rx.code(WEBHOOK_SECRET.value, id="github-webhook-secret"),
                    rx.icon_button(
                        rx.icon("copy", size=14),
                        on_click=[rx.set_clipboard(WEBHOOK_SECRET.value), rx.toast.success("Secret copied")],
                        size="1",
                        variant="ghost",
                        aria_label="Copy webhook secret",
                    ),
                    align="center",
                    spacing="2",
                ),
                rx.button("I have copied it", on_click=WEBHOOK_SECRET.dismiss, size="1", variant="soft"),
                spacing="2",
            ),
            color_scheme="amber",
            width="100%",
        ),
    )


def _connect_form() -> rx.Component:
    return rx.form(
        rx.vstack(
            _input("Repository", "repository", S.repository, "owner/name", placeholder="acme/shop"),
            _input("GitHub API URL", "api_url", S.api_url, "GitHub Enterprise: https://<host>/api/v3"),
            _labelled(
                "Authentication",
                "github-auth",
                rx.select(
                    ["app", "token"],
                    value=S.auth,
                    on_change=lambda v: S.set_field("auth", v),
                    id="github-auth",
                    aria_label="Authentication",
                ),
                "app: a GitHub App installation (recommended); token: a personal or fine-grained token",
            ),
            rx.cond(
                S.auth == "app",
                rx.vstack(
                    _input("App ID", "app_id", S.app_id, inputmode="numeric"),
                    _input("Installation ID", "installation_id", S.installation_id, inputmode="numeric"),
                    _labelled(
                        "App private key",
                        "github-private-key",
                        rx.text_area(
                            value=S.private_key,
                            on_change=lambda v: S.set_field("private_key", v),
                            id="github-private-key",
                            name="github-private-key",
                            aria_label="App private key",
                            placeholder="-----BEGIN RSA PRIVATE KEY-----",
                            rows="4",
                            width="100%",
                            style={"font_family": "var(--code-font-family)"},
                        ),
                        "Encrypted at rest; never shown again.",
                    ),
                    width="100%",
                ),
                _input(
                    "Token",
                    "token",
                    S.token,
                    "Encrypted at rest; never shown again.",
                    type="password",
                    auto_complete="off",
                ),
            ),
            rx.button(
                rx.icon("git-pull-request", size=16), "Connect repository", type="submit", id="github-connect"
            ),
            spacing="3",
            width="100%",
        ),
        on_submit=S.connect,
        width="100%",
    )


def _policy_form() -> rx.Component:
    return rx.form(
        rx.vstack(
            _switch("Pull requests get environments", "pull_requests", S.pull_requests),
            _switch("Draft pull requests too", "drafts", S.drafts),
            _input("Opt-in label", "opt_in_label", S.opt_in_label, "When set, only pull requests with it."),
            _input("Opt-out label", "opt_out_label", S.opt_out_label, "Never pull requests with it."),
            _input(
                "Push branches",
                "push_branches",
                S.push_branches,
                "Branch patterns whose pushes get an environment, comma-separated (e.g. main, release/*).",
            ),
            _switch("Check run on each commit (App connections)", "check_runs", S.check_runs),
            rx.button("Save policy", type="submit", id="github-save-policy"),
            spacing="3",
            width="100%",
        ),
        on_submit=S.save_policy,
        width="100%",
    )


def _connection() -> rx.Component:
    view = S.connection
    return rx.vstack(
        rx.hstack(
            rx.icon("git-pull-request", size=16),
            rx.link(
                view["repository"], href=view["repository_url"], is_external=True, id="github-repository"
            ),
            rx.badge(view["auth"], variant="soft"),
            rx.text("verified ", view["verified"], size="1", color_scheme="gray"),
            align="center",
            spacing="2",
        ),
        rx.cond(
            view["last_error"] != "",
            rx.text("Last error from GitHub: ", view["last_error"], size="2", color_scheme="red"),
        ),
        rx.text(
            "Webhook: ",
            rx.code(view["webhook_url"]),
            " · events: ",
            rx.code(S.events),
            size="2",
            color_scheme="gray",
        ),
        _policy_form(),
        rx.hstack(
            rx.button(
                rx.icon("refresh-cw", size=14),
                "Rotate webhook secret",
                on_click=S.rotate,
                variant="soft",
                id="github-rotate",
            ),
            rx.button(
                rx.icon("unplug", size=14),
                "Disconnect",
                on_click=S.disconnect,
                variant="soft",
                color_scheme="red",
                id="github-disconnect",
            ),
            spacing="2",
        ),
        spacing="3",
        width="100%",
    )


def github_panel() -> rx.Component:
    return rx.cond(
        S.visible,
        section(
            "GitHub",
            rx.text(
                "Pull requests of the connected repository become environments, with a comment, a "
                "deployment and (App connections) a check run on GitHub.",
                size="2",
                color_scheme="gray",
            ),
            _secret_once(),
            rx.cond(S.connected, _connection(), _connect_form()),
            error_callout(S.error),
            icon="git-pull-request",
            id="github",
        ),
    )
