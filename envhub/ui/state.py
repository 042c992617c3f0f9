"""Who is using the dashboard.

This build runs envhub single-user on the local machine, so every visitor acts
as the local user. Deciding the acting principal happens here and nowhere else,
so sign-in with OpenID Connect can replace it without touching any page: pages
open their unit of work with ``AuthState._acting()`` (or :func:`acting_as` from
a background task, with the key read from the state).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

import reflex as rx
from sqlmodel import Session

from envhub.config import get_settings
from envhub.domain.principals import Principal
from envhub.models.db import session_scope
from envhub.services.identity import ensure_local_principal

LOCAL = "local"


@contextmanager
def acting_as(who: str) -> Iterator[tuple[Session, Principal]]:
    """A session and the principal identified by ``who`` (always the local user for now)."""
    with session_scope() as session:
        yield session, ensure_local_principal(session)


class AuthState(rx.State):
    """The signed-in person, shared by every page (page states inherit from it)."""

    user_name: str = ""
    runtime_name: str = ""
    # The key acting_as() resolves; with OIDC it becomes the signed-in subject.
    _who: str = LOCAL

    def _acting(self) -> AbstractContextManager[tuple[Session, Principal]]:
        return acting_as(self._who)

    @rx.event
    def sign_in(self) -> None:
        """Runs on every page load: make sure the person exists and show who they are."""
        with acting_as(self._who) as (_session, principal):
            self.user_name = principal.name
        self.runtime_name = get_settings().runtime.value
