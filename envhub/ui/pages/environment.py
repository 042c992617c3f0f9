"""``/projects/[project_id]/environments/[environment_id]``: one environment, live.

Shows its URL, the latest job's steps while it provisions, errors with a next
step, what runs inside it (pods or its process, and runtime events), its logs
and its audit trail; redeploy and delete from here.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import reflex as rx

from envhub.domain.humanize import parse_id
from envhub.domain.logs import MAX_SEARCH
from envhub.errors import EnvhubError
from envhub.queue.events import environment_channel
from envhub.services import backing, environments, ports, sleeping
from envhub.services.backing import ManagedServiceRow
from envhub.services.environment_views import EMPTY_DETAIL
from envhub.services.inspection import EMPTY_INFO, INSPECT_EVERY, EventRow, WorkloadRow, WorkloadsInfo
from envhub.services.logs import LogFilter
from envhub.services.usage import EMPTY_USAGE, UsageView
from envhub.ui import views
from envhub.ui.components.backups import backups_section, restore_dialog
from envhub.ui.components.badges import phase_badge
from envhub.ui.components.common import not_found
from envhub.ui.components.costs import EMPTY_COSTS, costs_panel
from envhub.ui.components.environment_panels import (
    audit_panel,
    condition_callout,
    delete_confirm,
    deleted_callout,
    details_card,
    devcontainer_panel,
    failure_callout,
    url_hero,
)
from envhub.ui.components.layout import page_header, shell
from envhub.ui.components.logs import SINCE_CHOICES, log_picker, log_tools, logs_panel
from envhub.ui.components.managed_services import managed_services_panel
from envhub.ui.components.progress import progress_panel
from envhub.ui.components.release_panels import releases_panel
from envhub.ui.components.sleep_controls import idle_summary, sleep_buttons
from envhub.ui.components.terminal import replay_dialog, terminal_panel
from envhub.ui.components.usage import usage_panel
from envhub.ui.components.workloads import workloads_panel
from envhub.ui.feedback import error_toast, error_view, unexpected_view
from envhub.ui.live import LiveMixin
from envhub.ui.pages.environment_access import access_panel
from envhub.ui.pages.environment_backups import EnvironmentBackupsState
from envhub.ui.pages.environment_releases import EnvironmentReleasesState
from envhub.ui.state import AuthState

_EMPTY_DETAIL = EMPTY_DETAIL
EMPTY_IDLE = {
    "pinned": False, "last_active_at": "", "last_active": "", "sleeps_at": "", "sleeps": "",
    "expires_at": "", "expires": "", "can_sleep": False, "can_wake": False, "can_pin": False,
}  # fmt: skip


class EnvironmentState(LiveMixin, AuthState):
    found: bool = True
    loaded: bool = False
    project_name: str = ""
    project_href: str = "/"
    detail: views.EnvironmentDetail = _EMPTY_DETAIL
    run: views.RunView = views.EMPTY_RUN
    steps: list[views.StepRow] = rx.field(default_factory=list)
    logs: list[str] = rx.field(default_factory=list)
    # Services whose logs can be picked (several container services), and the pick.
    log_containers: list[str] = rx.field(default_factory=list)
    log_container: str = ""
    # The reader's filters, applied by the server: a search, and the previous instance (a crash's output).
    log_search: str = ""
    log_regex: bool = False
    log_previous: bool = False
    log_since: str = ""  # a span back from now ("15m"), "" for every line
    logs_note: str = ""
    workload_rows: list[WorkloadRow] = rx.field(default_factory=list)
    events: list[EventRow] = rx.field(default_factory=list)
    workloads_info: WorkloadsInfo = EMPTY_INFO
    usage: UsageView = EMPTY_USAGE
    audit: list[views.AuditRow] = rx.field(default_factory=list)
    audit_offset: int = 0
    audit_has_next: bool = False
    audit_label: str = ""
    # The terminal: the id the browser's terminal connects with, whether it can
    # open now, its containers, whether this person may type; a recording to replay.
    environment_id: int = 0
    terminal_ready: bool = False
    terminal_containers: list[str] = rx.field(default_factory=list)
    can_shell: bool = False
    replay_src: str = ""
    replay_label: str = ""
    can_redeploy: bool = False
    can_delete: bool = False
    idle: dict[str, Any] = rx.field(default_factory=lambda: dict(EMPTY_IDLE))
    costs: dict[str, str] = rx.field(default_factory=lambda: dict(EMPTY_COSTS))
    managed: list[ManagedServiceRow] = rx.field(default_factory=list)
    busy: str = ""
    confirm_open: bool = False
    confirm_text: str = ""  # a deployment environment's name, typed to delete it
    _project_id: int = 0
    _environment_id: int = 0

    # -- loading -----------------------------------------------------------

    def _live_poll_seconds(self) -> float:
        # The Workloads panel and the log show the runtime's own state, which
        # nothing announces: re-read it this often whatever the settings say.
        return INSPECT_EVERY

    def _live_request(self) -> tuple[Any, list[str]] | None:
        if not self._environment_id:
            return None
        chosen = LogFilter(
            previous=self.log_previous, search=self.log_search, regex=self.log_regex, since=self.log_since
        )
        query = (
            self._who,
            self._project_id,
            self._environment_id,
            self.audit_offset,
            self.log_container,
            chosen,
        )
        return query, [environment_channel(self._environment_id)]

    @staticmethod
    def _live_read(query: Any) -> dict[str, Any]:
        who, project_id, environment_id, audit_offset, log_container, chosen = query
        return views.read_environment(
            who,
            project_id=project_id,
            environment_id=environment_id,
            audit_offset=audit_offset,
            log_container=log_container,
            log_filter=chosen,
        )

    def _live_apply(self, view: dict[str, Any]) -> None:
        self.loaded = True
        self.found = view["found"]
        if not self.found:
            return
        self.project_name = view["project_name"]
        self.detail = view["detail"]
        self.run = view["run"]
        self.steps = view["steps"]
        self.logs = view["logs"]
        self.logs_note = view["logs_note"]
        self.log_containers = view["log_containers"]
        inside = view["workloads"]
        self.workload_rows = inside["rows"]
        self.events = inside["events"]
        self.workloads_info = inside["info"]
        self.usage = view["usage"]
        self.audit = view["audit"]
        self.audit_has_next = view["audit_has_next"]
        self.audit_label = view["audit_label"]
        terminal = view["terminal"]
        self.terminal_ready = terminal["ready"]
        self.terminal_containers = terminal["containers"]
        self.can_shell = terminal["can_shell"]
        self.can_redeploy = view["can_redeploy"]
        self.can_delete = view["can_delete"]
        self.idle = dict(view["idle"])
        self.costs = dict(view["costs"])
        self.managed = view["managed"]

    def _reload(self) -> None:
        request = self._live_request()
        if request is not None:
            self._live_apply(self._live_read(request[0]))

    @rx.event
    def load(self):
        if not self.signed_in:  # AuthState.sign_in, which ran first, is sending them to sign in
            return None
        params = self.router.page.params
        project, environment = str(params.get("project_id", "")), str(params.get("environment_id", ""))
        self._project_id = parse_id(project)
        self._environment_id = parse_id(environment)
        self.environment_id = self._environment_id
        self.replay_src, self.replay_label = "", ""
        self.project_href = f"/projects/{self._project_id}"
        self.project_name, self.detail = "", _EMPTY_DETAIL
        self.loaded, self.found = False, bool(self._project_id and self._environment_id)
        self.audit_offset, self.busy, self.confirm_open = 0, "", False
        self.log_container, self.log_containers = "", []
        self.log_search, self.log_regex, self.log_previous, self.logs_note = "", False, False, ""
        self.log_since = ""
        self.workload_rows, self.events, self.workloads_info = [], [], EMPTY_INFO
        self.usage = EMPTY_USAGE
        self._reload()
        return EnvironmentState.watch

    @rx.event
    def next_audit(self) -> None:
        if self.audit_has_next:
            self.audit_offset += views.AUDIT_PAGE_SIZE
            self._reload()

    @rx.event
    def prev_audit(self) -> None:
        self.audit_offset = max(0, self.audit_offset - views.AUDIT_PAGE_SIZE)
        self._reload()

    @rx.event
    def open_replay(self, src: str, label: str) -> None:
        self.replay_src, self.replay_label = src, label

    @rx.event
    def close_replay(self, open_: bool) -> None:
        if not open_:
            self.replay_src = ""

    @rx.event
    def pick_log_container(self, name: str) -> None:
        self.log_container = name
        self._reload()

    @rx.event
    def search_logs(self, form: dict[str, Any]) -> None:
        self.log_search = str(form.get("search", ""))[:MAX_SEARCH]
        self.log_regex = bool(form.get("regex"))
        self._reload()

    @rx.event
    def pick_log_since(self, choice: str) -> None:
        self.log_since = choice if choice in SINCE_CHOICES and choice != "all" else ""
        self._reload()

    @rx.var
    def log_since_choice(self) -> str:
        return self.log_since or "all"

    @rx.event
    def show_previous_logs(self, previous: bool) -> None:
        self.log_previous = previous
        self._reload()

    @rx.var
    def logs_download_href(self) -> str:
        """The same lines (every one that passes the filters, not only the last ones shown) as a file."""
        query: dict[str, str] = {}
        if self.log_container:
            query["container"] = self.log_container
        if self.log_previous:
            query["previous"] = "true"
        if self.log_since:
            query["since"] = self.log_since
        if self.log_search:
            query["search"] = self.log_search
            if self.log_regex:
                query["regex"] = "true"
        base = f"/api/v1/environments/{self.environment_id}/logs/download"
        return base + (f"?{urlencode(query)}" if query else "")

    # -- actions -----------------------------------------------------------

    @rx.event
    def set_confirm_open(self, open_: bool) -> None:
        self.confirm_open, self.confirm_text = open_, ""

    @rx.event
    def set_confirm_text(self, value: str) -> None:
        self.confirm_text = value

    @rx.event
    def redeploy(self):
        yield from self._act("redeploy", environments.redeploy_environment, "Redeploy started")

    @rx.event
    def sleep(self):
        yield from self._act("sleep", sleeping.sleep_environment, "Going to sleep; its workspace is kept")

    @rx.event
    def wake(self):
        yield from self._act("wake", sleeping.wake_environment, "Waking up")

    @rx.event
    def toggle_pin(self):
        pinned = not self.idle.get("pinned", False)
        yield from self._act(
            "pin",
            lambda **kwargs: sleeping.pin_environment(
                session=kwargs["session"],
                actor=kwargs["actor"],
                environment_id=kwargs["environment_id"],
                pinned=pinned,
            ),
            "Pinned: it neither sleeps nor expires" if pinned else "Unpinned",
        )

    @rx.event
    def delete(self):
        self.confirm_open = False
        # A deployment environment is deleted only by its name, typed (the service checks it).
        confirm = self.confirm_text.strip() if self.detail["kind"] == "deployment" else None
        yield from self._act("delete", environments.delete_environment, "Deletion started", confirm=confirm)

    @rx.event
    def rotate_credential(self, service: str):
        yield from self._act(
            f"rotate:{service}",
            backing.rotate_service_credentials,
            f"Rotating {service}'s credential; the environment is redeploying",
            service=service,
        )

    def _act(self, what: str, action: Any, done: str, **extra: Any):
        if self.busy:
            return
        self.busy = what
        yield
        try:
            with self._acting() as (session, actor):
                action(
                    session=session,
                    actor=actor,
                    queue=ports.queue(),
                    environment_id=self._environment_id,
                    **extra,
                )
        except Exception as exc:
            self.busy = ""
            yield error_toast(error_view(exc) if isinstance(exc, EnvhubError) else unexpected_view(exc))
            return
        self.busy = ""
        self._reload()
        yield rx.toast.info(done)


# -- page ------------------------------------------------------------------

S = EnvironmentState


def page() -> rx.Component:
    detail = S.detail
    actions = [
        rx.button(
            rx.cond(S.busy == "redeploy", rx.spinner(size="2"), rx.icon("refresh-cw", size=16)),
            "Redeploy",
            on_click=S.redeploy,
            disabled=~S.can_redeploy | (S.busy != ""),
            variant="soft",
            id="redeploy-environment",
        ),
        *sleep_buttons(S),
        delete_confirm(S),
    ]
    subtitle = rx.text(detail["message"], color_scheme="gray", size="3", id="environment-message")
    body = rx.fragment(
        page_header(
            detail["name"],
            subtitle,
            *actions,
            badge=rx.box(phase_badge(detail["phase"], size="2"), id="phase"),
        ),
        idle_summary(S),
        failure_callout(S),
        condition_callout(S),
        deleted_callout(S),
        url_hero(S),
        releases_panel(EnvironmentReleasesState),
        rx.grid(
            progress_panel(S.run, S.steps),
            details_card(S),
            grid_template_columns=rx.breakpoints(
                initial="minmax(0, 1fr)", md="minmax(0, 2fr) minmax(0, 1fr)"
            ),
            gap="20px",
            width="100%",
        ),
        # A deleted environment has nothing left to look inside; its callout says so.
        rx.cond(
            detail["phase"] != "deleted",
            managed_services_panel(S, below=lambda row: backups_section(row, S, EnvironmentBackupsState)),
        ),
        rx.cond((detail["phase"] != "deleted") & (detail["devcontainer"] != ""), devcontainer_panel(S)),
        rx.cond(detail["phase"] != "deleted", terminal_panel(S)),
        rx.cond(detail["phase"] != "deleted", workloads_panel(S)),
        rx.cond(detail["phase"] != "deleted", usage_panel(S)),
        costs_panel(S),
        logs_panel(
            S.logs,
            live=(detail["phase"] != "deleted") & (detail["phase"] != "failed"),
            empty=rx.cond(
                (detail["phase"] == "deleted") | (detail["phase"] == "deleting"),
                "Logs are removed together with the environment.",
                "No output yet.",
            ),
            picker=rx.cond(S.log_containers.length() > 1, log_picker(S)),
            tools=log_tools(S),
            note=S.logs_note,
        ),
        access_panel(),
        audit_panel(S),
        replay_dialog(S),
        restore_dialog(S, EnvironmentBackupsState),
    )
    return shell(
        rx.cond(
            S.found,
            rx.cond(S.loaded, body, rx.center(rx.spinner(size="3"), padding="80px", width="100%")),
            not_found("Environment", S.project_href, "Back to the project"),
        ),
        crumbs=[
            ("Projects", "/"),
            (rx.cond(S.project_name != "", S.project_name, "Project"), S.project_href),
            (rx.cond(S.found, detail["name"], "Not found"), ""),
        ],
    )
