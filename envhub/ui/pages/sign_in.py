"""``/sign-in``: how to get in. With OpenID Connect, a button to the provider;
in single-user mode, where to find the one-time link.

Signing in itself happens on plain HTTP routes (``/auth/*``), which set the
session cookie; this page only explains and links there.
"""

from __future__ import annotations

import json
from urllib.parse import quote, urlsplit

import reflex as rx

from envhub.config import AuthMode, get_settings
from envhub.services.signin import ENVIRONMENT_ACCESS_PREFIX, safe_next
from envhub.services.units import unit_of_work
from envhub.ui.components.layout import color_mode_toggle, logo
from envhub.ui.state import AuthState


class SignInState(AuthState):
    login_href: str = "/auth/login"
    provider: str = ""
    signed_out: bool = False
    checked: bool = False
    # Sent here by an environment whose project lets in only people signed in to envhub.
    for_environment: bool = False

    @rx.event
    def load(self):
        settings = get_settings()
        self.auth_mode = settings.auth_mode.value
        self.provider = urlsplit(settings.oidc_issuer).netloc if settings.oidc_issuer else ""
        params = self.router.url.query_parameters
        next_path = safe_next(str(params.get("next", "/")))
        self.signed_out = str(params.get("signed_out", "")) == "1"
        self.for_environment = next_path.startswith(ENVIRONMENT_ACCESS_PREFIX)
        self.login_href = f"/auth/login?next={quote(next_path, safe='/')}"
        with unit_of_work() as session:
            caller = self._caller(session)
        self.signed_in = caller is not None
        self.checked = True
        if caller is not None and not self.signed_out:
            if next_path.startswith(ENVIRONMENT_ACCESS_PREFIX):
                # A server route, not a page: the browser itself must go there.
                return rx.call_script(f"window.location.replace({json.dumps(next_path)})")
            return rx.redirect(next_path, replace=True)
        return None


S = SignInState


def _oidc() -> rx.Component:
    return rx.vstack(
        rx.text("Sign in with your organisation's account.", color_scheme="gray", size="2"),
        # A document navigation, not client-side routing: /auth/login is a server route.
        rx.link(
            rx.button(rx.icon("log-in", size=16), "Sign in with OpenID Connect", size="3", width="100%"),
            href=S.login_href,
            reload_document=True,
            id="oidc-sign-in",
            width="100%",
        ),
        rx.cond(
            S.provider != "",
            rx.text("Provider: ", rx.code(S.provider, variant="ghost"), size="1", color_scheme="gray"),
        ),
        spacing="3",
        width="100%",
    )


def _local() -> rx.Component:
    return rx.vstack(
        rx.text(
            "This envhub runs in single-user mode. Open the one-time sign-in link printed in the "
            "terminal where envhub started (",
            rx.code("make run", variant="ghost"),
            ").",
            size="2",
        ),
        rx.text("Lost it, or already used it? Print a fresh one:", size="2", color_scheme="gray"),
        rx.box(
            rx.code(".venv/bin/python -m envhub.launcher login-link", variant="ghost", size="2"),
            padding="10px 12px",
            width="100%",
            border_radius="var(--radius-3)",
            background=rx.color("gray", 3),
            style={"overflow_wrap": "anywhere"},
        ),
        rx.text(
            "Links work once and expire after a few minutes; envhub only listens on this machine.",
            size="1",
            color_scheme="gray",
        ),
        spacing="3",
        width="100%",
        id="local-sign-in",
    )


def page() -> rx.Component:
    card = rx.card(
        rx.vstack(
            rx.hstack(logo(), rx.spacer(), color_mode_toggle(), align="center", width="100%"),
            rx.heading("Sign in to envhub", size="6", weight="bold", id="page-title"),
            rx.cond(
                S.signed_out,
                rx.callout.root(
                    rx.callout.icon(rx.icon("circle-check", size=16)),
                    rx.callout.text("You are signed out."),
                    color_scheme="green",
                    size="1",
                    id="signed-out",
                ),
            ),
            rx.cond(
                S.for_environment,
                rx.callout.root(
                    rx.callout.icon(rx.icon("lock", size=16)),
                    rx.callout.text(
                        "The environment you opened is only for people signed in to envhub who may "
                        "see it. Sign in and you will be taken back to it."
                    ),
                    color_scheme="blue",
                    size="1",
                    id="for-environment",
                ),
            ),
            rx.cond(
                S.checked,
                rx.cond(S.auth_mode == AuthMode.oidc.value, _oidc(), _local()),
                rx.center(rx.spinner(), width="100%", padding="20px"),
            ),
            spacing="4",
            width="100%",
        ),
        size="4",
        width="100%",
        max_width="460px",
    )
    return rx.center(card, min_height="100vh", padding="24px", background=rx.color("gray", 2))
