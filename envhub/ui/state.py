"""Who is using the dashboard: decided here, from the session cookie, and nowhere else.

The browser's cookies arrive with the dashboard's WebSocket (Reflex keeps the
handshake's headers server-side; the page cannot change them), and every
event resolves them again through ``services/authentication``, the same code
the API uses. So a session that ends (sign-out, expiry, a provider re-check)
ends in open dashboards too. Pages open their unit of work with
``AuthState._acting()``, or :func:`acting_as` from a worker thread with the
key kept in ``_who`` (the session's digest, not the cookie itself); work
that only reads uses ``_reading()`` / :func:`reading_as`, whose reads run in
a read-only session (services/units.read_only).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import reflex as rx

from envhub.config import get_settings
from envhub.domain.principals import Principal
from envhub.errors import Unauthenticated
from envhub.services import signin
from envhub.services.authentication import Caller, authenticate, cookie_value, principal_for_session
from envhub.services.sessions import session_cookie_name
from envhub.services.units import Session, read_only, unit_of_work


@contextmanager
def acting_as(who: str) -> Iterator[tuple[Session, Principal]]:
    """A session and the principal of the browser session whose digest is ``who``."""
    with unit_of_work() as session:
        principal = principal_for_session(session, who) if who else None
        if principal is None:
            raise Unauthenticated("your session has ended; sign in again")
        yield session, principal


@contextmanager
def reading_as(who: str) -> Iterator[tuple[Session, Principal]]:
    """Like :func:`acting_as` for work that only reads (lists, the audit log).

    Signing in may write (it records activity), so it happens in a short
    unit of work of its own; the reading then runs in a read-only session,
    which on SQLite never holds the write lock.
    """
    with unit_of_work() as session:
        principal = principal_for_session(session, who) if who else None
    if principal is None:
        raise Unauthenticated("your session has ended; sign in again")
    with read_only() as session:
        yield session, principal


class AuthState(rx.State):
    """The signed-in person, shared by every page (page states inherit from it)."""

    user_name: str = ""
    display_name: str = ""
    runtime_name: str = ""
    auth_mode: str = ""
    signed_in: bool = False
    # The session's digest: what acting_as() resolves in worker threads.
    _who: str = ""

    def _caller(self, session: Session) -> Caller | None:
        headers = self.router.headers
        caller = authenticate(
            session,
            cookie_header=headers.cookie,
            authorization=None,  # the dashboard is a browser: sessions only
            source_ip=self.router.session.client_ip,
            user_agent=headers.user_agent,
        )
        self._who = caller.session_hash if caller and caller.session_hash else ""
        return caller

    @contextmanager
    def _acting(self) -> Iterator[tuple[Session, Principal]]:
        with unit_of_work() as session:
            caller = self._caller(session)
            if caller is None:
                self.signed_in = False
                raise Unauthenticated("your session has ended; sign in again")
            yield session, caller.principal

    @contextmanager
    def _reading(self) -> Iterator[tuple[Session, Principal]]:
        """Like ``_acting`` for work that only reads (see :func:`reading_as`)."""
        with unit_of_work() as session:
            caller = self._caller(session)
        if caller is None:
            self.signed_in = False
            raise Unauthenticated("your session has ended; sign in again")
        with read_only() as session:
            yield session, caller.principal

    @rx.event
    def sign_in(self):
        """Runs first on every page load: who is here, or off to the sign-in page."""
        settings = get_settings()
        self.runtime_name, self.auth_mode = settings.runtime.value, settings.auth_mode.value
        with unit_of_work() as session:
            caller = self._caller(session)
        if caller is None:
            self.signed_in, self.user_name = False, ""
            path = self.router.url.path or "/"
            return rx.redirect(f"/sign-in?next={quote(path, safe='/')}", replace=True)
        self.signed_in, self.user_name = True, caller.principal.name
        self.display_name = caller.principal.name
        return None

    @rx.event
    def sign_out(self):
        """End the session server-side, then go to the provider's logout (or the sign-in page)."""
        headers = self.router.headers
        token = cookie_value(headers.cookie, session_cookie_name())
        with unit_of_work() as session:
            target = signin.sign_out(
                session, token=token, source_ip=self.router.session.client_ip, user_agent=headers.user_agent
            )
        self.signed_in, self.user_name, self._who = False, "", ""
        return rx.redirect(target, replace=True)
