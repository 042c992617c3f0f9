"""The Backups sections of the environment page's Services panel (managed PostgreSQL), live.

Its own substate, loaded with the page and watching the environment's
channel like the rest of it: the backup jobs announce when they start and
finish, so a backup shows queued, running, then its size without a reload.
Each database pages its backups on its own ("Older" follows the use case's
``next_before``). A restore opens one confirm dialog; the use case decides
who may restore and checks a deployment environment's typed name, and what
it refuses is shown in the dialog.
"""

from __future__ import annotations

from typing import Any

import reflex as rx

from envhub.domain.humanize import parse_id
from envhub.errors import EnvhubError
from envhub.queue.events import environment_channel
from envhub.services import backups, ports
from envhub.ui import views
from envhub.ui.feedback import NO_ERROR, ErrorView, error_toast, error_view, unexpected_view
from envhub.ui.live import LiveMixin
from envhub.ui.state import AuthState


class EnvironmentBackupsState(LiveMixin, AuthState):
    panels: dict[str, views.BackupPanel] = rx.field(default_factory=dict)
    busy: str = ""  # "backup:<service>" or "restore" while the use case answers
    # The restore being confirmed.
    restore_open: bool = False
    restore_service: str = ""
    restore_what: str = ""  # "the backup taken 3 h ago (13.0 MB)"
    restore_confirm: str = ""  # a deployment environment's name, typed
    restore_error: ErrorView = NO_ERROR
    _restore_backup_id: int = 0
    # Per service, the cursors of the older pages shown so far ("Newer" goes back one).
    _pages: dict[str, list[int]] = rx.field(default_factory=dict)
    _environment_id: int = 0

    # -- loading -----------------------------------------------------------

    def _live_request(self) -> tuple[Any, list[str]] | None:
        if not self._environment_id:
            return None
        before = tuple(sorted((service, pages[-1]) for service, pages in self._pages.items() if pages))
        return (self._who, self._environment_id, before), [environment_channel(self._environment_id)]

    @staticmethod
    def _live_read(query: Any) -> dict[str, views.BackupPanel]:
        who, environment_id, before = query
        return views.read_backups(who, environment_id=environment_id, before=dict(before))

    def _live_apply(self, panels: dict[str, views.BackupPanel]) -> None:
        self.panels = panels

    def _reload(self) -> None:
        request = self._live_request()
        if request is not None:
            self._live_apply(self._live_read(request[0]))

    @rx.event
    def load(self):
        if not self.signed_in:
            return None
        self._environment_id = parse_id(str(self.router.page.params.get("environment_id", "")))
        self._pages, self.panels, self.busy, self.restore_open = {}, {}, "", False
        self._reload()
        return EnvironmentBackupsState.watch

    @rx.event
    def older(self, service: str) -> None:
        panel = self.panels.get(service)
        if panel is not None and panel["older"]:
            self._pages = {**self._pages, service: [*self._pages.get(service, []), panel["older"]]}
            self._reload()

    @rx.event
    def newer(self, service: str) -> None:
        self._pages = {**self._pages, service: self._pages.get(service, [])[:-1]}
        self._reload()

    # -- actions -----------------------------------------------------------

    @rx.event
    def back_up(self, service: str):
        if self.busy:
            return
        self.busy = f"backup:{service}"
        yield
        try:
            with self._acting() as (session, actor):
                backups.request_backup(
                    session=session,
                    actor=actor,
                    queue=ports.queue(),
                    environment_id=self._environment_id,
                    service=service,
                )
        except Exception as exc:
            self.busy = ""
            yield error_toast(error_view(exc) if isinstance(exc, EnvhubError) else unexpected_view(exc))
            return
        self.busy = ""
        self._pages = {**self._pages, service: []}  # the new one is on the newest page
        self._reload()
        yield rx.toast.info(f"Backing up {service}")

    @rx.event
    def ask_restore(self, backup_id: int, service: str, what: str) -> None:
        self._restore_backup_id, self.restore_service, self.restore_what = backup_id, service, what
        self.restore_confirm, self.restore_error, self.restore_open = "", NO_ERROR, True

    @rx.event
    def set_restore_open(self, open_: bool) -> None:
        self.restore_open = open_
        if not open_:
            self.restore_confirm, self.restore_error = "", NO_ERROR

    @rx.event
    def set_restore_confirm(self, value: str) -> None:
        self.restore_confirm, self.restore_error = value, NO_ERROR

    @rx.event
    def restore(self):
        if self.busy or not self._restore_backup_id:
            return
        self.busy = "restore"
        yield
        # Sent only when typed: the dialog asks for it in a deployment environment, the use case checks it.
        confirm = self.restore_confirm.strip() or None
        try:
            with self._acting() as (session, actor):
                backups.restore_backup(
                    session=session,
                    actor=actor,
                    queue=ports.queue(),
                    backup_id=self._restore_backup_id,
                    environment_id=self._environment_id,
                    confirm=confirm,
                )
        except EnvhubError as exc:  # not allowed, not confirmed, busy: said in the dialog
            self.busy, self.restore_error = "", error_view(exc)
            return
        except Exception as exc:
            self.busy, self.restore_open = "", False
            yield error_toast(unexpected_view(exc))
            return
        self.busy, self.restore_open, self.restore_confirm = "", False, ""
        self._reload()
        yield rx.toast.info(f"Restoring {self.restore_service}: its current contents are backed up first")
