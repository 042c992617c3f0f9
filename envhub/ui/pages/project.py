"""``/projects/[project_id]``: a project's defaults and its environments, live."""

from __future__ import annotations

import logging
from typing import Any

import reflex as rx

from envhub.domain.humanize import parse_id
from envhub.domain.naming import validate_label
from envhub.errors import EnvhubError
from envhub.queue.events import environment_channel, project_channel
from envhub.services import backing, environments, ports, projects
from envhub.services.backing import CatalogEntryView
from envhub.services.inputs import parse_env_lines
from envhub.services.project_views import ServiceRow
from envhub.ui import views
from envhub.ui.components.common import empty_state, error_callout, not_found
from envhub.ui.components.environments import create_options_dialog, delete_dialog, environments_table
from envhub.ui.components.layout import page_header, shell
from envhub.ui.components.managed_services import CATALOG_CHOICE, declared_services_panel
from envhub.ui.components.project_defaults import project_defaults, url_access_setting
from envhub.ui.feedback import NO_ERROR, ErrorView, error_toast, error_view, field_of, unexpected_view
from envhub.ui.live import LiveMixin
from envhub.ui.pages.project_github import github_panel
from envhub.ui.pages.project_secrets import secrets_panel
from envhub.ui.state import AuthState

log = logging.getLogger(__name__)

_FIELDS = {
    "environment name": "name",
    "name": "name",
    "kind": "kind",
    "ref": "ref",
    "command": "command",
    "env": "env",
}


class ProjectState(LiveMixin, AuthState):
    found: bool = True
    loaded: bool = False
    header: views.ProjectHeader = views.EMPTY_HEADER
    services: list[ServiceRow] = rx.field(default_factory=list)
    rows: list[views.EnvironmentRow] = rx.field(default_factory=list)
    total: int = 0
    has_next: bool = False
    offset: int = 0
    page_label: str = ""
    load_error: ErrorView = NO_ERROR
    deployments_href: str = ""
    _project_id: int = 0
    _ids: dict[str, int] = rx.field(default_factory=dict)

    # Actions in flight, so their buttons show a spinner and cannot be clicked twice.
    creating: bool = False
    busy_row: str = ""
    confirm_name: str = ""
    confirm_kind: str = ""
    confirm_text: str = ""  # a deployment environment's name, typed to delete it

    # The "Managed services" form: the kind chosen (``postgres``, ..., or ``catalog:<entry>``),
    # what the operator's catalog offers, the use case's refusal, and a key that empties the
    # form (a new one after an add; a refused add keeps what was typed).
    service_kind: str = "postgres"
    catalog: list[CatalogEntryView] = rx.field(default_factory=list)
    service_error: ErrorView = NO_ERROR
    devcontainer_error: str = ""
    idle_error: str = ""
    service_form: int = 0

    # The "Create with options" dialog.
    options_open: bool = False
    opts: dict[str, str] = rx.field(default_factory=dict)
    opt_errors: dict[str, str] = rx.field(default_factory=dict)
    opt_error: ErrorView = NO_ERROR

    # -- loading -----------------------------------------------------------

    def _live_request(self) -> tuple[Any, list[str]] | None:
        if not self._project_id:
            return None
        # Phase changes are announced per project; step progress only per environment.
        channels = [project_channel(self._project_id), *map(environment_channel, self._ids.values())]
        return (self._who, self._project_id, self.offset), channels

    @staticmethod
    def _live_read(query: Any) -> dict[str, Any]:
        who, project_id, offset = query
        return views.read_project(who, project_id=project_id, offset=offset)

    def _live_apply(self, view: dict[str, Any]) -> None:
        self.loaded = True
        self.found = view["found"]
        if not self.found:
            return
        self.header = view["header"]
        self.services = view["services"]
        self.rows = view["rows"]
        self._ids = view["ids"]
        self.total = view["total"]
        self.has_next = view["has_next"]
        self.page_label = view["label"]

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
        if not self.signed_in:  # AuthState.sign_in, which ran first, is sending them to sign in
            return None
        raw = str(self.router.page.params.get("project_id", ""))
        self._project_id = parse_id(raw)
        self.deployments_href = f"/projects/{self._project_id}/deployments"
        self.offset, self.loaded, self.found = 0, False, bool(self._project_id)
        self.confirm_name, self.busy_row, self.options_open = "", "", False
        self.service_kind, self.service_error = "postgres", NO_ERROR
        self._load_catalog()
        self._reload()
        return ProjectState.watch

    def _load_catalog(self) -> None:
        """The operator's offer, for the kind menu; a catalog that cannot be read offers nothing here
        (declaring an entry over another face says why)."""
        try:
            with self._reading() as (_session, actor):
                self.catalog = backing.catalog_entries(actor=actor)
        except EnvhubError as exc:
            log.warning("the project page offers no catalog services: %s", exc.message)
            self.catalog = []

    @rx.var
    def chosen_entry(self) -> CatalogEntryView:
        """The catalog entry the kind menu names, or an empty one (no parameters) for other kinds."""
        name = self.service_kind.removeprefix(CATALOG_CHOICE)
        found = next((entry for entry in self.catalog if entry["name"] == name), None)
        if found is None or not self.service_kind.startswith(CATALOG_CHOICE):
            return CatalogEntryView(name="", title="", description="", parameters=[], variables=[])
        return found

    @rx.event
    def next_page(self) -> None:
        if self.has_next:
            self.offset += views.PAGE_SIZE
            self._reload()

    @rx.event
    def prev_page(self) -> None:
        self.offset = max(0, self.offset - views.PAGE_SIZE)
        self._reload()

    # -- actions -----------------------------------------------------------

    def _fail(self, exc: Exception) -> Any:
        return error_toast(error_view(exc) if isinstance(exc, EnvhubError) else unexpected_view(exc))

    @rx.event
    def create_quick(self):
        if self.creating:
            return
        self.creating = True
        yield
        try:
            with self._acting() as (session, actor):
                environment = environments.create_environment(
                    session=session, actor=actor, queue=ports.queue(), project_id=self._project_id
                )
                name = environment.name
        except Exception as exc:
            self.creating = False
            yield self._fail(exc)
            return
        self.creating = False
        self._reload()
        yield rx.toast.success(f"Creating {name}", description="It appears below and updates as it starts.")

    @rx.event
    def set_url_access(self, value: str):
        """The project page's own setting: who can open its environments' URLs."""
        if value == self.header["url_access"]:
            return
        try:
            with self._acting() as (session, actor):
                projects.update_project(
                    session=session, actor=actor, project_id=self._project_id, changes={"url_access": value}
                )
        except Exception as exc:
            yield self._fail(exc)
            return
        self._reload()
        yield rx.toast.success("Saved", description=f"Environment URLs: {self.header['url_access_label']}")

    @rx.event
    def set_devcontainer(self, form: dict[str, Any]):
        """The named dev container configuration (empty: the default places); a refusal shows by the field."""
        value = str(form.get("devcontainer", "")).strip()
        try:
            with self._acting() as (session, actor):
                projects.update_project(
                    session=session, actor=actor, project_id=self._project_id, changes={"devcontainer": value}
                )
        except EnvhubError as exc:
            self.devcontainer_error = field_of(exc, {"devcontainer": "devcontainer"}).get(
                "devcontainer", exc.message
            )
            return
        except Exception as exc:
            yield self._fail(exc)
            return
        self.devcontainer_error = ""
        self._reload()
        yield rx.toast.success("Saved", description=f"Dev container: {value or 'the default places'}")

    @rx.event
    def set_idle(self, form: dict[str, Any]):
        """The project's idle sleep (minutes) and TTL (hours); 0 or empty turns each off."""
        try:
            changes = {key: int(str(form.get(key) or 0)) for key in ("sleep_after_minutes", "ttl_hours")}
        except ValueError:
            self.idle_error = "Whole numbers of minutes and hours, please"
            return
        try:
            with self._acting() as (session, actor):
                projects.update_project(
                    session=session, actor=actor, project_id=self._project_id, changes=changes
                )
        except EnvhubError as exc:
            self.idle_error = exc.message
            return
        except Exception as exc:
            yield self._fail(exc)
            return
        self.idle_error = ""
        self._reload()
        yield rx.toast.success("Saved", description="Idle sleep and TTL")

    def _save_backing(self, declared: list[dict[str, Any]]) -> None:
        with self._acting() as (session, actor):
            projects.update_project(
                session=session, actor=actor, project_id=self._project_id, changes={"backing": declared}
            )
        self._reload()

    @rx.event
    def set_service_kind(self, kind: str) -> None:
        self.service_kind, self.service_error = kind, NO_ERROR

    @rx.event
    def add_service(self, form: dict[str, Any]):
        """Declares the service the form describes; a refusal shows next to the form, what was typed kept."""
        name = str(form.get("service-name", "")).strip()
        declaration: dict[str, Any] = {"name": name, "kind": self.service_kind}
        entry = self.chosen_entry
        if entry["name"]:
            # Every parameter as shown (a default left alone too): the project declares what it saw.
            parameters = {
                item["name"]: str(form.get(f"parameter-{item['name']}", item["default"])).strip()
                for item in entry["parameters"]
            }
            declaration = {"name": name, "kind": "catalog", "entry": entry["name"], "parameters": parameters}
        current = [dict(item["settings"]) for item in self.header["backing"]]
        try:
            self._save_backing([*current, declaration])
        except EnvhubError as exc:
            self.service_error = error_view(exc)
            return
        except Exception as exc:
            self.service_error = unexpected_view(exc)
            return
        self.service_kind, self.service_error = "postgres", NO_ERROR
        self.service_form += 1
        yield rx.toast.success("Saved", description=f"Added {name}")

    @rx.event
    def remove_service(self, name: str):
        current = [dict(item["settings"]) for item in self.header["backing"] if item["name"] != name]
        try:
            self._save_backing(current)
        except Exception as exc:
            yield self._fail(exc)
            return
        yield rx.toast.success("Saved", description=f"Removed {name}")

    @rx.event
    def open_options(self, open_: bool = True) -> None:
        self.options_open = open_
        if not open_:
            return
        self.opt_errors, self.opt_error = {}, NO_ERROR
        try:
            with self._acting() as (session, actor):
                name = environments.suggest_environment_name(
                    session=session, actor=actor, project_id=self._project_id
                )
        except EnvhubError:
            name = ""
        self.opts = {"name": name, "kind": "development", "ref": "", "command": "", "env": ""}

    @rx.event
    def set_opt(self, field: str, value: str) -> None:
        self.opts = {**self.opts, field: value}
        errors = {k: v for k, v in self.opt_errors.items() if k != field}
        if field == "name" and value:
            try:
                validate_label(value, field="environment name")
            except EnvhubError as exc:
                errors["name"] = exc.message
        self.opt_errors = errors

    @rx.event
    def create_with_options(self):
        if self.creating:
            return
        self.creating, self.opt_error = True, NO_ERROR
        yield
        opts = self.opts
        try:
            overrides: dict[str, Any] = {
                "ref": opts.get("ref", "").strip(),
                "command": opts.get("command", "").strip(),
            }
            overrides["env"] = parse_env_lines(opts.get("env", ""))
            with self._acting() as (session, actor):
                environment = environments.create_environment(
                    session=session,
                    actor=actor,
                    queue=ports.queue(),
                    project_id=self._project_id,
                    name=opts.get("name", "").strip() or None,
                    kind=opts.get("kind") or "development",
                    overrides=overrides,
                )
                href = f"/projects/{self._project_id}/environments/{environment.id}"
                name = environment.name
        except EnvhubError as exc:
            self.creating = False
            self.opt_errors = field_of(exc, _FIELDS)
            if not self.opt_errors:
                self.opt_error = error_view(exc)
            return
        except Exception as exc:
            self.creating = False
            self.opt_error = unexpected_view(exc)
            return
        self.creating, self.options_open = False, False
        yield rx.toast.success(f"Creating {name}")
        yield rx.redirect(href)

    @rx.event
    def ask_delete(self, name: str) -> None:
        self.confirm_name, self.confirm_text = name, ""
        self.confirm_kind = next((row["kind"] for row in self.rows if row["name"] == name), "")

    @rx.event
    def set_confirm_text(self, value: str) -> None:
        self.confirm_text = value

    @rx.event
    def close_delete(self, open_: bool) -> None:
        if not open_:
            self.confirm_name = ""

    @rx.event
    def confirm_delete(self, name: str):
        self.confirm_name = ""
        confirm = self.confirm_text.strip() if self.confirm_kind == "deployment" else None
        yield from self._row_action(
            name, environments.delete_environment, f"Deleting {name}", confirm=confirm
        )

    @rx.event
    def redeploy(self, name: str):
        yield from self._row_action(name, environments.redeploy_environment, f"Redeploying {name}")

    def _row_action(self, name: str, action: Any, done: str, **extra: Any):
        environment_id = self._ids.get(name)
        if environment_id is None or self.busy_row:
            return
        self.busy_row = name
        yield
        try:
            with self._acting() as (session, actor):
                action(
                    session=session, actor=actor, queue=ports.queue(), environment_id=environment_id, **extra
                )
        except Exception as exc:
            self.busy_row = ""
            yield self._fail(exc)
            return
        self.busy_row = ""
        self._reload()
        yield rx.toast.info(done)


def page() -> rx.Component:
    header = ProjectState.header
    actions = [
        rx.link(
            rx.button(rx.icon("rocket", size=16), "Deployments", variant="soft", color_scheme="gray"),
            href=ProjectState.deployments_href,
            id="project-deployments",
        ),
        create_options_dialog(ProjectState),
        rx.button(
            rx.cond(ProjectState.creating, rx.spinner(size="2"), rx.icon("plus", size=16)),
            "Create environment",
            on_click=ProjectState.create_quick,
            disabled=ProjectState.creating,
            id="create-environment",
        ),
    ]
    subtitle = rx.hstack(
        rx.cond(header["description"] != "", rx.text(header["description"], color_scheme="gray")),
        rx.text(
            "team ",
            rx.code(header["team"], variant="ghost"),
            " · created ",
            header["created"],
            color_scheme="gray",
            size="2",
        ),
        spacing="3",
        wrap="wrap",
    )
    body = rx.fragment(
        page_header(header["name"], subtitle, *actions),
        error_callout(ProjectState.load_error),
        project_defaults(ProjectState),
        url_access_setting(ProjectState),
        declared_services_panel(ProjectState),
        rx.cond(
            ProjectState.total == 0,
            empty_state(
                "box",
                "No environments yet",
                "An environment runs this project's command in its own sandbox and gets a public URL.",
                rx.button(
                    rx.icon("plus", size=16),
                    "Create environment",
                    on_click=ProjectState.create_quick,
                    disabled=ProjectState.creating,
                ),
            ),
            environments_table(ProjectState),
        ),
        github_panel(),
        secrets_panel(),
        delete_dialog(ProjectState),
    )
    return shell(
        rx.cond(
            ProjectState.found,
            rx.cond(ProjectState.loaded, body, rx.center(rx.spinner(size="3"), padding="80px", width="100%")),
            not_found("Project", "/", "All projects"),
        ),
        crumbs=[("Projects", "/"), (rx.cond(ProjectState.found, header["name"], "Not found"), "")],
    )
