"""``/projects/[project_id]/deployments``: a project's deployment environments side by side, live.

Each environment's card shows what it runs and what waits to land there
(gates ✓/✗, approvals, Approve and Cancel); below them, how the environments'
renderings of the newest artifact differ. Settings are edited in a dialog
(``deployment_settings.py``); a person can release a commit by hand.
"""

from __future__ import annotations

from typing import Any

import reflex as rx

from envhub.domain.humanize import parse_id
from envhub.domain.releases import ReleaseTrigger
from envhub.errors import EnvhubError
from envhub.queue.events import environment_channel, project_channel
from envhub.services import ports, releases
from envhub.ui import views
from envhub.ui.components.badges import phase_badge
from envhub.ui.components.common import (
    dialog_actions,
    empty_state,
    error_callout,
    form_field,
    not_found,
    section,
)
from envhub.ui.components.layout import page_header, shell
from envhub.ui.components.releases import approvals_list, diff_viewer, gate_list, release_status
from envhub.ui.feedback import NO_ERROR, ErrorView, error_toast, error_view, field_of, unexpected_view
from envhub.ui.live import LiveMixin
from envhub.ui.pages.deployment_form import settings_dialog
from envhub.ui.pages.deployment_settings import DeploymentSettingsState
from envhub.ui.state import AuthState

_RELEASE_FIELDS = {"commit": "commit", "ref": "ref"}


class DeploymentsState(LiveMixin, AuthState):
    found: bool = True
    loaded: bool = False
    project_name: str = ""
    project_href: str = "/"
    configured: bool = False
    source: str = ""
    branches: str = ""
    release_on: str = ""
    compared: str = ""
    can_configure: bool = False
    can_release: bool = False
    cards: list[views.EnvironmentCard] = rx.field(default_factory=list)
    differences: list[views.ChangeView] = rx.field(default_factory=list)
    load_error: ErrorView = NO_ERROR
    busy: str = ""  # "approve-12", "cancel-12": the action in flight
    # "Release a commit".
    release_open: bool = False
    releasing: bool = False
    commit: str = ""
    ref: str = ""
    release_errors: dict[str, str] = rx.field(default_factory=dict)
    release_error: ErrorView = NO_ERROR
    _project_id: int = 0
    _settings: dict[str, Any] = rx.field(default_factory=dict)
    _environment_ids: list[int] = rx.field(default_factory=list)

    # -- loading -----------------------------------------------------------

    def _live_request(self) -> tuple[Any, list[str]] | None:
        if not self._project_id:
            return None
        channels = [project_channel(self._project_id), *map(environment_channel, self._environment_ids)]
        return (self._who, self._project_id), channels

    @staticmethod
    def _live_read(query: Any) -> dict[str, Any]:
        who, project_id = query
        return views.read_deployments(who, project_id=project_id)

    def _live_apply(self, read: dict[str, Any]) -> None:
        self.loaded = True
        self.found = read["found"]
        if not self.found:
            return
        view = read["view"]
        self.project_name = view["project"]
        self.configured = view["configured"]
        self.source, self.branches, self.release_on = view["source"], view["branches"], view["release_on"]
        self.compared = view["compared"]
        self.can_configure, self.can_release = view["can_configure"], view["can_release"]
        self._settings = view["settings"]
        self.cards = read["cards"]
        self._environment_ids = [card["id"] for card in read["cards"]]
        self.differences = read["differences"]

    def _reload(self) -> None:
        request = self._live_request()
        if request is None:
            return
        try:
            self._live_apply(self._live_read(request[0]))
            self.load_error = NO_ERROR
        except EnvhubError as exc:
            self.load_error = error_view(exc)

    @rx.event
    def load(self):
        if not self.signed_in:
            return None
        self._project_id = parse_id(str(self.router.page.params.get("project_id", "")))
        self.project_href = f"/projects/{self._project_id}"
        self.loaded, self.found, self.busy, self.release_open = False, bool(self._project_id), "", False
        self._reload()
        return DeploymentsState.watch

    # -- actions -----------------------------------------------------------

    @rx.event
    def open_settings(self):
        return DeploymentSettingsState.edit(self._settings)

    @rx.event
    def approve(self, release_id: int):
        yield from self._act(
            f"approve-{release_id}", "Approved", releases.approve_release, release_id, queue=True
        )

    @rx.event
    def cancel(self, release_id: int):
        yield from self._act(f"cancel-{release_id}", "Release cancelled", releases.cancel_release, release_id)

    def _act(self, what: str, done: str, action: Any, release_id: int, *, queue: bool = False):
        if self.busy:
            return
        self.busy = what
        yield
        try:
            with self._acting() as (session, actor):
                extra = {"queue": ports.queue()} if queue else {}
                action(session=session, actor=actor, release_id=release_id, **extra)
        except Exception as exc:
            self.busy = ""
            yield error_toast(error_view(exc) if isinstance(exc, EnvhubError) else unexpected_view(exc))
            return
        self.busy = ""
        self._reload()
        yield rx.toast.success(done)

    @rx.event
    def set_release_open(self, open_: bool) -> None:
        self.release_open = open_
        if open_:
            self.commit, self.ref, self.release_errors, self.release_error = "", "", {}, NO_ERROR

    @rx.event
    def set_release_field(self, field: str, value: str) -> None:
        if field in _RELEASE_FIELDS:
            setattr(self, field, value)
            self.release_errors = {k: v for k, v in self.release_errors.items() if k != field}

    @rx.event
    def release_commit(self, _form: dict[str, Any] | None = None):
        if self.releasing:
            return
        self.releasing, self.release_errors, self.release_error = True, {}, NO_ERROR
        yield
        try:
            with self._acting() as (session, actor):
                made = releases.create_release(
                    session=session,
                    actor=actor,
                    queue=ports.queue(),
                    project_id=self._project_id,
                    commit=self.commit,
                    ref=self.ref.strip(),
                    trigger=ReleaseTrigger.manual,
                )
                summary = ", ".join(f"#{release.number}" for release in made)
        except EnvhubError as exc:
            self.releasing = False
            self.release_errors = field_of(exc, _RELEASE_FIELDS)
            if not self.release_errors:
                self.release_error = error_view(exc)
            return
        except Exception as exc:
            self.releasing = False
            self.release_error = unexpected_view(exc)
            return
        self.releasing, self.release_open = False, False
        self._reload()
        yield rx.toast.success(
            f"Release {summary} started", description="It renders, then lands as its rules allow."
        )


# -- page ------------------------------------------------------------------

S = DeploymentsState
MUTED = {"size": "1", "color_scheme": "gray"}


def _release_line(row: rx.Var) -> rx.Component:
    return rx.vstack(
        rx.hstack(
            rx.text("#", row["number"], weight="bold", size="3", class_name="release-number"),
            release_status(row["status"], row["tone"]),
            rx.text(row["trigger"], " by ", row["triggered_by"], **MUTED),
            align="center",
            spacing="2",
            wrap="wrap",
        ),
        rx.hstack(
            rx.icon("git-commit-horizontal", size=13, color=rx.color("gray", 10)),
            rx.code(row["short_commit"], variant="ghost", size="1"),
            rx.cond(row["ref"] != "", rx.text(row["ref"], **MUTED)),
            rx.text("·", **MUTED),
            rx.text(row["created"], **MUTED),
            align="center",
            spacing="1",
            wrap="wrap",
        ),
        rx.cond(
            row["digest"] != "",
            rx.tooltip(
                rx.hstack(
                    rx.text("digest", **MUTED, flex_shrink="0"),
                    rx.code(
                        row["digest"],
                        variant="ghost",
                        size="1",
                        min_width="0",
                        overflow="hidden",
                        text_overflow="ellipsis",
                        white_space="nowrap",
                        class_name="release-digest",
                    ),
                    align="center",
                    spacing="1",
                    width="100%",
                    min_width="0",
                ),
                content=row["digest"],
            ),
        ),
        rx.cond(row["chart"] != "", rx.text("chart ", row["chart"], **MUTED)),
        spacing="1",
        width="100%",
        min_width="0",
    )


def _waiting(card: rx.Var) -> rx.Component:
    row = card["waiting"]
    open_ = (row["status"] == "waiting") | (row["status"] == "rendering")
    return rx.vstack(
        rx.text(
            rx.cond(open_, "Waiting to land", "Latest release"),
            size="1",
            weight="medium",
            color_scheme="gray",
        ),
        _release_line(row),
        rx.cond(row["message"] != "", rx.text(row["message"], size="2", class_name="release-message")),
        rx.cond(
            open_,
            rx.vstack(
                gate_list(card["gates"]),
                rx.cond(card["approvals"].length() > 0, approvals_list(card["approvals"])),
                rx.cond(
                    card["approve_note"] != "",
                    rx.text(card["approve_note"], size="2", color_scheme="gray", class_name="approve-note"),
                ),
                rx.hstack(
                    rx.cond(
                        card["can_approve"],
                        rx.button(
                            rx.cond(
                                S.busy == "approve-" + row["id"].to_string(),
                                rx.spinner(size="2"),
                                rx.icon("check", size=15),
                            ),
                            "Approve",
                            on_click=S.approve(row["id"]),
                            disabled=S.busy != "",
                            color_scheme="green",
                            size="2",
                            class_name="approve-release",
                        ),
                    ),
                    rx.cond(
                        card["can_cancel"],
                        rx.button(
                            rx.cond(
                                S.busy == "cancel-" + row["id"].to_string(),
                                rx.spinner(size="2"),
                                rx.icon("x", size=15),
                            ),
                            "Cancel",
                            on_click=S.cancel(row["id"]),
                            disabled=S.busy != "",
                            variant="soft",
                            color_scheme="gray",
                            size="2",
                            class_name="cancel-release",
                        ),
                    ),
                    spacing="2",
                ),
                spacing="3",
                width="100%",
            ),
        ),
        spacing="2",
        width="100%",
        padding="12px",
        border_radius="var(--radius-3)",
        background=rx.cond(open_, rx.color("amber", 2), rx.color("gray", 2)),
        border=rx.cond(open_, f"1px solid {rx.color('amber', 6)}", f"1px solid {rx.color('gray', 4)}"),
        class_name="waiting-release",
    )


def _card(card: rx.Var) -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.hstack(
                rx.link(rx.heading(card["name"], size="4"), href=card["href"], class_name="deploy-env-link"),
                rx.box(phase_badge(card["phase"]), class_name="deploy-phase"),
                rx.spacer(),
                rx.link(
                    rx.hstack(
                        rx.icon("history", size=14), rx.text("History", size="2"), align="center", spacing="1"
                    ),
                    href=card["href"] + "#releases",
                    color_scheme="gray",
                ),
                align="center",
                spacing="2",
                width="100%",
            ),
            rx.cond(
                card["url"] != "",
                rx.link(
                    rx.hstack(
                        rx.icon("globe", size=14),
                        rx.text(card["url"], size="2", truncate=True),
                        align="center",
                        spacing="1",
                    ),
                    href=card["url"],
                    is_external=True,
                    max_width="100%",
                    class_name="deploy-url",
                ),
                rx.text("No URL until a release is ready.", **MUTED),
            ),
            rx.separator(size="4"),
            rx.text("Running", size="1", weight="medium", color_scheme="gray"),
            rx.cond(
                card["has_running"],
                rx.box(_release_line(card["running"]), class_name="running-release", width="100%"),
                rx.text(card["message"], size="2", color_scheme="gray", class_name="running-release"),
            ),
            rx.cond(card["has_waiting"], _waiting(card)),
            rx.separator(size="4"),
            rx.vstack(
                rx.hstack(
                    rx.icon("arrow-down-to-line", size=13, color=rx.color("gray", 10)),
                    rx.text(
                        "Takes releases from ",
                        rx.text.strong(
                            rx.cond(card["promote_from"] != "", card["promote_from"], "merges and CI")
                        ),
                        size="1",
                    ),
                    align="center",
                    spacing="1",
                ),
                rx.hstack(
                    rx.icon(
                        "shield-check", size=13, color=rx.color("gray", 10), flex_shrink="0", margin_top="2px"
                    ),
                    rx.text(card["rules"], size="1", class_name="deploy-rules"),
                    align="start",
                    spacing="1",
                ),
                rx.hstack(
                    rx.icon(
                        "sliders-horizontal",
                        size=13,
                        color=rx.color("gray", 10),
                        flex_shrink="0",
                        margin_top="2px",
                    ),
                    rx.text("Declares ", card["declares"], size="1", class_name="deploy-declares"),
                    align="start",
                    spacing="1",
                ),
                spacing="1",
                width="100%",
            ),
            spacing="3",
            width="100%",
        ),
        size="2",
        width="100%",
        class_name="deploy-env",
        data_name=card["name"],
        data_phase=card["phase"],
    )


def _release_dialog() -> rx.Component:
    return rx.dialog.root(
        rx.dialog.trigger(
            rx.button(
                rx.icon("rocket", size=16), "Release a commit", disabled=~S.can_release, id="release-commit"
            )
        ),
        rx.dialog.content(
            rx.dialog.title("Release a commit"),
            rx.dialog.description(
                "Renders it once and releases it to the environments that take releases from merges and CI; "
                "the others get it by promotion.",
                size="2",
                color_scheme="gray",
                margin_bottom="12px",
            ),
            rx.form(
                rx.vstack(
                    form_field(
                        "Commit SHA",
                        rx.input(
                            value=S.commit,
                            on_change=lambda v: S.set_release_field("commit", v),
                            placeholder="40 hex digits",
                            id="release-sha",
                            name="release-sha",
                            width="100%",
                            font_family="var(--code-font-family)",
                            auto_focus=True,
                        ),
                        error=S.release_errors.get("commit", ""),
                        required=True,
                    ),
                    form_field(
                        "Ref",
                        rx.input(
                            value=S.ref,
                            on_change=lambda v: S.set_release_field("ref", v),
                            placeholder="main",
                            id="release-ref",
                            name="release-ref",
                            width="100%",
                        ),
                        error=S.release_errors.get("ref", ""),
                        help_text="The branch or tag it comes from, as the history shows it.",
                    ),
                    error_callout(S.release_error),
                    dialog_actions(
                        rx.button(
                            rx.cond(S.releasing, rx.spinner(size="2"), rx.icon("rocket", size=16)),
                            "Release",
                            type="submit",
                            disabled=S.releasing,
                            id="release-submit",
                        ),
                        padding_top="8px",
                    ),
                    spacing="3",
                    width="100%",
                ),
                on_submit=S.release_commit,
                width="100%",
            ),
            max_width="480px",
        ),
        open=S.release_open,
        on_open_change=S.set_release_open,
    )


def _differences() -> rx.Component:
    return section(
        "How staging and production differ",
        rx.text(
            rx.cond(
                S.compared != "",
                "The newest release rendered for each environment, object by object (" + S.compared + "). "
                "Everything else is the same artifact.",
                "Appears once a release has been rendered.",
            ),
            size="2",
            color_scheme="gray",
        ),
        diff_viewer(
            S.differences,
            empty=rx.cond(S.compared != "", "They render the same objects.", "Nothing rendered yet."),
            id="deploy-differences",
        ),
        icon="git-compare",
        id="differences",
    )


def _configured() -> rx.Component:
    return rx.fragment(
        rx.grid(
            rx.foreach(S.cards, _card),
            grid_template_columns="repeat(auto-fit, minmax(300px, 1fr))",
            gap="16px",
            width="100%",
            align_items="start",
            id="deploy-environments",
        ),
        _differences(),
    )


def _empty() -> rx.Component:
    return empty_state(
        "rocket",
        "No deployment environments yet",
        "Deployment environments (staging, production) are long-lived: a merge to a deploy branch or a CI "
        "call releases it to staging, and production gets what staging ran once its approvals and gates "
        "pass. Both come from one rendering, so they differ only in what each declares.",
        rx.button(
            rx.icon("rocket", size=16),
            "Set up staging and production",
            on_click=S.open_settings,
            disabled=~S.can_configure,
            id="setup-deployments",
        ),
    )


def page() -> rx.Component:
    subtitle = rx.hstack(
        rx.text("Project ", rx.link(S.project_name, href=S.project_href), color_scheme="gray", size="2"),
        rx.cond(
            S.configured,
            rx.text(
                "· ",
                S.source,
                " · branches ",
                rx.code(S.branches, variant="ghost"),
                " · on ",
                S.release_on,
                color_scheme="gray",
                size="2",
            ),
        ),
        spacing="2",
        wrap="wrap",
    )
    actions = rx.cond(
        S.configured,
        rx.hstack(
            rx.button(
                rx.icon("settings-2", size=16),
                "Settings",
                on_click=S.open_settings,
                disabled=~S.can_configure,
                variant="soft",
                id="deploy-settings",
            ),
            _release_dialog(),
            spacing="2",
        ),
    )
    body = rx.fragment(
        page_header("Deployments", subtitle, actions),
        error_callout(S.load_error),
        rx.cond(S.configured, _configured(), _empty()),
        settings_dialog(),
    )
    return shell(
        rx.cond(
            S.found,
            rx.cond(S.loaded, body, rx.center(rx.spinner(size="3"), padding="80px", width="100%")),
            not_found("Project", "/", "All projects"),
        ),
        crumbs=[
            ("Projects", "/"),
            (rx.cond(S.project_name != "", S.project_name, "Project"), S.project_href),
            ("Deployments", ""),
        ],
    )
