"""The environment page's "Releases" panel (deployment environments only), live.

The history is a table; a release opens in a dialog with its gates,
approvals, workloads, the object diff against what runs (or any other
release of the environment) and its rendered objects, with the actions its
``allowed`` flags and the environment's promotion rules permit.
"""

from __future__ import annotations

from typing import Any

import reflex as rx

from envhub.domain.humanize import parse_id
from envhub.errors import EnvhubError
from envhub.queue.events import environment_channel
from envhub.services import ports, releases
from envhub.services.release_views import ApprovalView, GateView, ReleaseAllowed, ReleaseDetail, ReleaseRow
from envhub.ui import views
from envhub.ui.feedback import NO_ERROR, ErrorView, error_toast, error_view, unexpected_view
from envhub.ui.live import LiveMixin
from envhub.ui.state import AuthState

RUNNING = "running"  # the compare selector's "what the environment runs"

EMPTY_DETAIL = ReleaseDetail(
    release=views.EMPTY_RELEASE, project_id=0, project="", gates=[], approvals=[], approvals_needed=0,
    approver_role="", workloads=[], objects="", notes="", running_id=None, against_id=None, changes=[],
    allowed=ReleaseAllowed(approve=False, cancel=False, rollback=False), approve_note="",
)  # fmt: skip


class EnvironmentReleasesState(LiveMixin, AuthState):
    visible: bool = False
    env_name: str = ""
    promote_from: str = ""
    promotes_to: list[str] = rx.field(default_factory=list)
    can_release: bool = False
    runs: int = 0  # the id of the release the environment runs (0: none)
    rows: list[ReleaseRow] = rx.field(default_factory=list)
    choices: list[dict[str, str]] = rx.field(default_factory=list)
    total: int = 0
    has_next: bool = False
    offset: int = 0
    page_label: str = ""
    # The open release.
    detail_open: bool = False
    # The open release's ReleaseDetail, field by field. Reflex cannot check a value against the
    # services' TypedDicts (typing_extensions ones), so the two plain ones are held as dicts.
    release: dict[str, Any] = rx.field(default_factory=lambda: dict(views.EMPTY_RELEASE))
    allowed: dict[str, bool] = rx.field(default_factory=lambda: dict(EMPTY_DETAIL["allowed"]))
    approve_note: str = ""
    gates: list[GateView] = rx.field(default_factory=list)
    approvals: list[ApprovalView] = rx.field(default_factory=list)
    approvals_needed: int = 0
    approver_role: str = ""
    workloads: list[dict[str, str]] = rx.field(default_factory=list)
    objects: str = ""
    notes: str = ""
    running_id: int = 0  # the release the environment runs (0: none)
    changes: list[views.ChangeView] = rx.field(default_factory=list)
    against: str = RUNNING
    comment: str = ""
    busy: str = ""
    detail_error: ErrorView = NO_ERROR
    _project_id: int = 0
    _environment_id: int = 0
    _release_id: int = 0

    # -- loading -----------------------------------------------------------

    def _against_id(self) -> int | None:
        return None if self.against == RUNNING else parse_id(self.against) or None

    def _live_request(self) -> tuple[Any, list[str]] | None:
        if not self._environment_id:
            return None
        release = self._release_id if self.detail_open else 0
        query = (self._who, self._project_id, self._environment_id, self.offset, release, self._against_id())
        return query, [environment_channel(self._environment_id)]

    @staticmethod
    def _live_read(query: Any) -> dict[str, Any]:
        who, project_id, environment_id, offset, release_id, against = query
        read = views.read_releases(who, project_id=project_id, environment_id=environment_id, offset=offset)
        if read["visible"] and release_id:
            try:
                read["release"] = views.read_release(who, release_id=release_id, against=against)
            except EnvhubError as exc:
                read["release_error"] = error_view(exc)
        return read

    def _live_apply(self, read: dict[str, Any]) -> None:
        self.visible = read["visible"]
        if not self.visible:
            return
        self.env_name, self.promote_from = read["name"], read["promote_from"]
        self.promotes_to, self.can_release, self.runs = (
            read["promotes_to"],
            read["can_release"],
            read["running"],
        )
        self.rows, self.choices = read["rows"], read["choices"]
        self.total, self.has_next, self.page_label = read["total"], read["has_next"], read["label"]
        if "release" in read:
            self._show(read["release"]["detail"])
            self.changes, self.detail_error = read["release"]["changes"], NO_ERROR
        elif "release_error" in read:
            self.detail_error = read["release_error"]

    def _show(self, detail: ReleaseDetail) -> None:
        self.release, self.allowed = dict(detail["release"]), dict(detail["allowed"])
        self.approve_note = detail["approve_note"]
        self.gates, self.approvals = detail["gates"], detail["approvals"]
        self.approvals_needed, self.approver_role = detail["approvals_needed"], detail["approver_role"]
        self.workloads, self.objects, self.notes = detail["workloads"], detail["objects"], detail["notes"]
        self.running_id = detail["running_id"] or 0

    def _reload(self) -> None:
        request = self._live_request()
        if request is not None:
            self._live_apply(self._live_read(request[0]))

    @rx.event
    def load(self):
        if not self.signed_in:
            return None
        params = self.router.page.params
        self._project_id = parse_id(str(params.get("project_id", "")))
        self._environment_id = parse_id(str(params.get("environment_id", "")))
        self.visible, self.offset, self.detail_open, self.busy = False, 0, False, ""
        self._reload()
        return EnvironmentReleasesState.watch

    @rx.event
    def next_page(self) -> None:
        if self.has_next:
            self.offset += views.RELEASES_PAGE_SIZE
            self._reload()

    @rx.event
    def prev_page(self) -> None:
        self.offset = max(0, self.offset - views.RELEASES_PAGE_SIZE)
        self._reload()

    @rx.event
    def open_release(self, release_id: int) -> None:
        self._release_id, self.detail_open = release_id, True
        self.against, self.comment, self.busy = RUNNING, "", ""
        self._show(EMPTY_DETAIL)
        self.changes, self.detail_error = [], NO_ERROR
        self._reload()

    @rx.event
    def set_detail_open(self, open_: bool) -> None:
        self.detail_open = open_

    @rx.event
    def compare(self, value: str) -> None:
        self.against = value
        self._reload()

    @rx.event
    def set_comment(self, value: str) -> None:
        self.comment = value[:2000]

    # -- actions -----------------------------------------------------------

    @rx.event
    def approve(self):
        comment = self.comment.strip()
        yield from self._act("approve", "Approved", releases.approve_release, queue=True, comment=comment)

    @rx.event
    def cancel(self):
        yield from self._act("cancel", "Release cancelled", releases.cancel_release)

    @rx.event
    def rollback(self):
        yield from self._act("rollback", "Rolling back", releases.rollback, queue=True)

    @rx.event
    def promote(self, to: str):
        yield from self._act(f"promote-{to}", f"Promoted to {to}", releases.promote, queue=True, to=to)

    def _act(self, what: str, done: str, action: Any, *, queue: bool = False, **extra: Any):
        if self.busy or not self._release_id:
            return
        self.busy = what
        yield
        try:
            with self._acting() as (session, actor):
                if queue:
                    extra["queue"] = ports.queue()
                made = action(session=session, actor=actor, release_id=self._release_id, **extra)
                number, made_id = made.number, made.id
        except Exception as exc:
            self.busy = ""
            yield error_toast(error_view(exc) if isinstance(exc, EnvhubError) else unexpected_view(exc))
            return
        self.busy, self.comment = "", ""
        if what == "rollback":  # the rollback is a new release: show that one
            self._release_id = made_id or self._release_id
        self._reload()
        yield rx.toast.success(done, description=f"Release #{number}")
