"""``/``: the projects list, search, and the "New project" dialog's state."""

from __future__ import annotations

from typing import Any

import reflex as rx

from envhub.domain.naming import validate_label
from envhub.domain.specs import DEFAULT_COMMAND
from envhub.domain.url_access import UrlAccess
from envhub.errors import EnvhubError
from envhub.services import identity_views, projects
from envhub.services.identity import default_team_id
from envhub.services.identity_views import SharedRow
from envhub.services.inputs import parse_services
from envhub.ui import views, workload_defaults
from envhub.ui.components.common import (
    dash_if_empty,
    empty_state,
    error_callout,
    mono,
    pager,
    section,
)
from envhub.ui.components.layout import page_header, shell
from envhub.ui.components.project_form import create_dialog
from envhub.ui.feedback import NO_ERROR, ErrorView, error_view, field_of, unexpected_view
from envhub.ui.live import LiveMixin
from envhub.ui.state import AuthState

# Names the services use for fields in error details -> this form's fields.
_FIELDS = {
    "project name": "name",
    "name": "name",
    "description": "description",
    "repo_url": "repo_url",
    "ref": "ref",
    "command": "command",
    "health_path": "health_path",
    "devcontainer": "devcontainer",
    "url_access": "url_access",
}
_BLANK_FORM = dict.fromkeys({*_FIELDS.values(), *workload_defaults.FIELDS, "team"}, "")


class ProjectsState(LiveMixin, AuthState):
    rows: list[views.ProjectRow] = rx.field(default_factory=list)
    total: int = 0
    has_next: bool = False
    offset: int = 0
    search: str = ""
    page_label: str = ""
    loaded: bool = False
    shared: list[SharedRow] = rx.field(default_factory=list)
    # Teams where the person may create projects: [{"id", "name"}], for the dialog.
    team_choices: list[dict[str, str]] = rx.field(default_factory=list)
    load_error: ErrorView = NO_ERROR
    _channels: list[str] = rx.field(default_factory=list)

    # The "New project" dialog.
    dialog_open: bool = False
    form: dict[str, str] = rx.field(default_factory=dict)
    errors: dict[str, str] = rx.field(default_factory=dict)
    form_error: ErrorView = NO_ERROR
    creating: bool = False
    workloads_open: bool = False

    @rx.var
    def team_names(self) -> list[str]:
        return [choice["name"] for choice in self.team_choices]

    @rx.var
    def workloads_summary(self) -> str:
        """What the collapsed workloads section holds, so it is not forgotten there."""
        filled = [
            label
            for label, fields in (
                ("services", [workload_defaults.SERVICES]),
                ("manifests", [workload_defaults.MANIFESTS]),
                ("egress", list(workload_defaults.EGRESS_FIELDS.values())),
            )
            if any(self.form.get(field, "").strip() for field in fields)
        ]
        return " · ".join(filled)

    # -- loading -----------------------------------------------------------

    def _live_request(self) -> tuple[Any, list[str]]:
        return (self._who, self.offset, self.search), self._channels

    @staticmethod
    def _live_read(query: Any) -> dict[str, Any]:
        who, offset, search = query
        return views.read_projects(who, offset=offset, search=search)

    def _live_apply(self, view: dict[str, Any]) -> None:
        self.rows = view["rows"]
        self.shared = view["shared"]
        self.total = view["total"]
        self.has_next = view["has_next"]
        self.page_label = view["label"]
        self._channels = view["channels"]
        self.loaded = True

    def _reload(self) -> None:
        try:
            self._live_apply(self._live_read(self._live_request()[0]))
            self.load_error = NO_ERROR
        except EnvhubError as exc:
            self.load_error = error_view(exc)

    @rx.event
    def load(self):
        if not self.signed_in:  # AuthState.sign_in, which ran first, is sending them to sign in
            return None
        self.dialog_open = False  # a reload or a visit never reopens a dialog
        self._reload()
        return ProjectsState.watch

    @rx.event
    def set_search(self, value: str) -> None:
        self.search = value
        self.offset = 0
        self._reload()

    @rx.event
    def next_page(self) -> None:
        if self.has_next:
            self.offset += views.PAGE_SIZE
            self._reload()

    @rx.event
    def prev_page(self) -> None:
        self.offset = max(0, self.offset - views.PAGE_SIZE)
        self._reload()

    # -- creating ----------------------------------------------------------

    @rx.event
    def open_dialog(self, open_: bool = True) -> None:
        self.dialog_open = open_
        if open_:
            with self._acting() as (session, actor):
                choices = [
                    {"id": row["id"], "name": row["name"]}
                    for row in identity_views.team_rows(session=session, actor=actor)
                    if row["can_create_projects"]
                ]
            self.team_choices = choices
            first = choices[0]["name"] if choices else ""
            self.form = {
                **_BLANK_FORM,
                "command": DEFAULT_COMMAND,
                "health_path": "/",
                "url_access": UrlAccess.public.value,
                "team": first,
            }
            self.errors = {}
            self.form_error = NO_ERROR
            self.workloads_open = False

    @rx.event
    def toggle_workloads(self) -> None:
        self.workloads_open = not self.workloads_open

    @rx.event
    def check_services(self, _value: str = "") -> None:
        """On leaving the services field: say at once when its YAML does not parse."""
        try:
            parse_services(self.form.get(workload_defaults.SERVICES, ""))
        except EnvhubError as exc:
            self.errors = {**self.errors, workload_defaults.SERVICES: exc.message}

    @rx.event
    def set_field(self, field: str, value: str) -> None:
        self.form = {**self.form, field: value}
        errors = {k: v for k, v in self.errors.items() if k != field}
        if field == "name" and value:
            # Live feedback for the one rule people trip over: DNS-safe names.
            try:
                validate_label(value, field="project name")
            except EnvhubError as exc:
                errors["name"] = exc.message
        self.errors = errors

    @rx.event
    def submit(self, _form: dict[str, Any]):
        """Enter in a field submits the form; the values are already in ``form``."""
        yield from self._create()

    def _team_id(self, session: Any, actor: Any, name: str) -> int:
        chosen = next((int(c["id"]) for c in self.team_choices if c["name"] == name), None)
        return chosen if chosen is not None else default_team_id(session, actor)

    def _create(self):
        if self.creating:
            return None
        self.creating = True
        self.form_error = NO_ERROR
        yield
        form = self.form
        services: list[dict[str, Any]] = []
        try:
            workloads = workload_defaults.workloads_from_form(form)
            services = (workloads or {}).get("services", [])
            with self._acting() as (session, actor):
                project = projects.create_project(
                    session=session,
                    actor=actor,
                    team_id=self._team_id(session, actor, form.get("team", "")),
                    name=form.get("name", "").strip(),
                    description=form.get("description", ""),
                    repo_url=form.get("repo_url") or None,
                    default_ref=form.get("ref") or None,
                    command=form.get("command") or None,
                    health_path=form.get("health_path") or None,
                    devcontainer=form.get("devcontainer") or None,
                    url_access=form.get("url_access") or None,
                    workloads=workloads,
                )
        except EnvhubError as exc:
            self.creating = False
            in_workloads = workload_defaults.workload_errors(exc, services)
            self.errors = {**field_of(exc, _FIELDS), **in_workloads}
            if in_workloads:
                self.workloads_open = True  # never hide an error in a collapsed section
            if not self.errors:
                self.form_error = error_view(exc)
            return None
        except Exception as exc:
            self.creating = False
            self.form_error = unexpected_view(exc)
            return None
        self.creating = False
        self.dialog_open = False
        yield rx.toast.success(f"Project {project.name} created")
        yield rx.redirect(f"/projects/{project.id}")
        return None


def project_row(row: rx.Var) -> rx.Component:
    return rx.table.row(
        rx.table.row_header_cell(
            rx.vstack(
                rx.link(row["name"], href=row["href"], weight="medium", class_name="project-link"),
                rx.cond(
                    row["description"] != "",
                    rx.text(
                        row["description"], size="1", color_scheme="gray", truncate=True, max_width="360px"
                    ),
                ),
                spacing="0",
            )
        ),
        rx.table.cell(
            rx.cond(
                row["repo"] != "",
                rx.hstack(
                    rx.icon("git-branch", size=13, color=rx.color("gray", 9)), mono(row["repo"]), spacing="1"
                ),
                rx.text("—", color_scheme="gray"),
            )
        ),
        rx.table.cell(
            rx.badge(rx.icon("box", size=12), row["environments"], variant="soft", color_scheme="gray"),
        ),
        rx.table.cell(rx.text(dash_if_empty(row["created"]), size="2", color_scheme="gray")),
        align="center",
    )


def projects_table() -> rx.Component:
    return rx.card(
        rx.table.root(
            rx.table.header(
                rx.table.row(
                    rx.table.column_header_cell("Project", width="40%"),
                    rx.table.column_header_cell("Repository", width="30%"),
                    rx.table.column_header_cell("Environments", width="15%"),
                    rx.table.column_header_cell("Created", width="15%"),
                )
            ),
            rx.table.body(rx.foreach(ProjectsState.rows, project_row)),
            variant="ghost",
            size="2",
            width="100%",
            id="projects-table",
        ),
        rx.box(
            pager(
                ProjectsState.page_label,
                has_prev=ProjectsState.offset > 0,
                has_next=ProjectsState.has_next,
                on_prev=ProjectsState.prev_page,
                on_next=ProjectsState.next_page,
            ),
            padding_top="12px",
        ),
        width="100%",
    )


def page() -> rx.Component:
    searching = ProjectsState.search != ""
    return shell(
        page_header(
            "Projects",
            "Each project is an app; its environments are running copies with their own URL.",
            create_dialog(ProjectsState),
        ),
        error_callout(ProjectsState.load_error),
        rx.cond(
            ProjectsState.loaded & (ProjectsState.total == 0) & ~searching,
            empty_state(
                "folder-plus",
                "No projects yet",
                "Create a project with the command that serves your app; then start environments from it "
                "in one click.",
                rx.button(
                    rx.icon("plus", size=16),
                    "Create your first project",
                    on_click=ProjectsState.open_dialog(True),
                ),
            ),
            rx.vstack(
                rx.input(
                    rx.input.slot(rx.icon("search", size=16)),
                    placeholder="Search projects…",
                    aria_label="Search projects",
                    value=ProjectsState.search,
                    on_change=ProjectsState.set_search,
                    debounce_timeout=250,
                    width="100%",
                    max_width="360px",
                    id="project-search",
                ),
                rx.cond(
                    ProjectsState.loaded & (ProjectsState.total == 0),
                    empty_state("search-x", "No matching projects", "Try another search."),
                    projects_table(),
                ),
                spacing="3",
                width="100%",
            ),
        ),
        rx.cond(ProjectsState.shared.length() > 0, shared_with_me()),
        crumbs=[("Projects", "/")],
    )


def shared_with_me() -> rx.Component:
    """Environments of other teams shared with me (or with one of my teams)."""
    return section(
        "Shared with you",
        rx.vstack(
            rx.foreach(
                ProjectsState.shared,
                lambda row: rx.hstack(
                    rx.icon("share-2", size=14, color=rx.color("gray", 10)),
                    rx.link(
                        row["project"],
                        "/",
                        row["name"],
                        href=row["href"],
                        weight="medium",
                        class_name="shared-link",
                    ),
                    rx.text("team ", row["team"], size="1", color_scheme="gray"),
                    rx.badge(row["role"], variant="soft", radius="full"),
                    rx.cond(
                        row["expires"] != "", rx.text("until ", row["expires"], size="1", color_scheme="gray")
                    ),
                    align="center",
                    spacing="2",
                ),
            ),
            spacing="2",
            width="100%",
            id="shared-with-me",
        ),
        icon="share-2",
    )
