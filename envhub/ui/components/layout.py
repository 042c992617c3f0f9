"""The frame every page sits in: sidebar navigation, a top bar, a footer.

Pages pass their breadcrumbs and content; the frame is the same everywhere so
the product reads as one thing.
"""

from __future__ import annotations

import reflex as rx

from envhub.ui.state import AuthState

SIDEBAR_WIDTH = "232px"
CONTENT_MAX_WIDTH = "1120px"


def logo() -> rx.Component:
    return rx.link(
        rx.hstack(
            rx.center(
                rx.icon("layers", size=18, color="white"),
                width="30px",
                height="30px",
                border_radius="8px",
                background="linear-gradient(135deg, var(--accent-9), var(--accent-11))",
            ),
            rx.text("envhub", size="4", weight="bold", color=rx.color("gray", 12)),
            align="center",
            spacing="2",
        ),
        href="/",
        underline="none",
    )


def nav_item(icon: str, label: str, href: str, *, active: bool = False) -> rx.Component:
    return rx.link(
        rx.hstack(
            rx.icon(icon, size=16),
            rx.text(label, size="2", weight="medium"),
            align="center",
            spacing="2",
            padding_x="10px",
            padding_y="7px",
            border_radius="var(--radius-2)",
            width="100%",
            background=rx.color("accent", 3) if active else "transparent",
            color=rx.color("accent", 11) if active else rx.color("gray", 11),
            _hover={"background": rx.color("gray", 3), "color": rx.color("gray", 12)},
        ),
        href=href,
        underline="none",
        width="100%",
    )


def color_mode_toggle() -> rx.Component:
    return rx.tooltip(
        rx.icon_button(
            rx.color_mode_cond(light=rx.icon("moon", size=16), dark=rx.icon("sun", size=16)),
            on_click=rx.toggle_color_mode,
            variant="ghost",
            color_scheme="gray",
            size="2",
            aria_label="Toggle dark mode",
            id="color-mode-toggle",
        ),
        content="Toggle light / dark",
    )


def user_card() -> rx.Component:
    return rx.hstack(
        rx.avatar(
            fallback=rx.cond(AuthState.user_name != "", AuthState.user_name.to(str)[0].upper(), "?"),
            size="2",
            radius="full",
            variant="soft",
        ),
        rx.vstack(
            rx.text(AuthState.user_name, size="2", weight="medium", id="signed-in-user", truncate=True),
            rx.text(
                rx.cond(AuthState.auth_mode == "oidc", "Signed in with OpenID", "Single-user mode"),
                size="1",
                color_scheme="gray",
            ),
            spacing="0",
            min_width="0",
            flex="1",
        ),
        rx.tooltip(
            rx.icon_button(
                rx.icon("log-out", size=15),
                on_click=AuthState.sign_out,
                variant="ghost",
                color_scheme="gray",
                size="1",
                aria_label="Sign out",
                id="sign-out",
            ),
            content="Sign out",
        ),
        align="center",
        spacing="2",
        width="100%",
    )


def sidebar(active: str) -> rx.Component:
    # The outer box stretches with the page (border and background all the way
    # down); the inner column sticks to the viewport so navigation stays put.
    return rx.box(
        rx.vstack(
            rx.box(logo(), padding_x="6px", padding_bottom="12px"),
            rx.text("Workspace", size="1", weight="medium", color_scheme="gray", padding_x="10px"),
            nav_item("folder-kanban", "Projects", "/", active=active == "projects"),
            nav_item("boxes", "Environments", "/environments", active=active == "environments"),
            nav_item("users", "Teams", "/teams", active=active == "teams"),
            rx.text(
                "Account",
                size="1",
                weight="medium",
                color_scheme="gray",
                padding_x="10px",
                padding_top="14px",
            ),
            nav_item("key-round", "Tokens", "/tokens", active=active == "tokens"),
            nav_item("scroll-text", "Audit log", "/audit", active=active == "audit"),
            rx.spacer(),
            rx.separator(),
            user_card(),
            height="100vh",
            position="sticky",
            top="0",
            padding="16px 12px",
            spacing="1",
        ),
        width=SIDEBAR_WIDTH,
        min_width=SIDEBAR_WIDTH,
        align_self="stretch",
        border_right=f"1px solid {rx.color('gray', 5)}",
        background=rx.color("gray", 2),
        display=["none", "none", "none", "block"],
    )


def breadcrumbs(crumbs: list[tuple[str | rx.Var[str], str | rx.Var[str]]]) -> rx.Component:
    """``[(label, href), ...]``; the last one is the current page (no link)."""
    parts: list[rx.Component] = []
    for index, (label, href) in enumerate(crumbs):
        if index:
            parts.append(rx.icon("chevron-right", size=14, color=rx.color("gray", 8)))
        if index == len(crumbs) - 1:
            parts.append(rx.text(label, size="2", weight="medium", truncate=True))
        else:
            parts.append(rx.link(rx.text(label, size="2"), href=href, color_scheme="gray", underline="hover"))
    return rx.hstack(*parts, align="center", spacing="2", min_width="0")


def top_bar(crumbs: list[tuple[str | rx.Var[str], str | rx.Var[str]]]) -> rx.Component:
    return rx.hstack(
        rx.box(logo(), display=["block", "block", "block", "none"]),
        breadcrumbs(crumbs),
        rx.spacer(),
        rx.badge(
            rx.icon("cpu", size=12),
            rx.text("runtime: ", rx.cond(AuthState.runtime_name != "", AuthState.runtime_name, "local")),
            variant="surface",
            color_scheme="gray",
            radius="full",
        ),
        color_mode_toggle(),
        align="center",
        spacing="3",
        width="100%",
        height="56px",
        padding_x="24px",
        position="sticky",
        top="0",
        z_index="10",
        border_bottom=f"1px solid {rx.color('gray', 4)}",
        background=rx.color("gray", 1),
        style={"backdrop_filter": "blur(8px)"},
    )


def footer() -> rx.Component:
    return rx.hstack(
        rx.text("envhub 0.1.0", size="1", color_scheme="gray"),
        rx.text("·", size="1", color_scheme="gray"),
        rx.text(
            rx.cond(AuthState.runtime_name != "", AuthState.runtime_name, "local"),
            " runtime, ",
            rx.cond(AuthState.auth_mode == "oidc", "sign-in with OpenID Connect", "single user"),
            size="1",
            color_scheme="gray",
        ),
        rx.spacer(),
        rx.link("Health", href="/healthz", size="1", color_scheme="gray", is_external=True),
        spacing="2",
        padding="20px 24px",
        width="100%",
        border_top=f"1px solid {rx.color('gray', 4)}",
    )


def shell(
    *children: rx.Component,
    crumbs: list[tuple[str | rx.Var[str], str | rx.Var[str]]],
    active: str = "projects",
) -> rx.Component:
    return rx.hstack(
        sidebar(active),
        rx.vstack(
            top_bar(crumbs),
            rx.box(
                # Nothing of a page shows before the server has said who is here.
                rx.cond(
                    AuthState.signed_in,
                    rx.vstack(*children, spacing="5", width="100%"),
                    rx.center(rx.spinner(size="3"), padding="80px", width="100%"),
                ),
                width="100%",
                max_width=CONTENT_MAX_WIDTH,
                margin_x="auto",
                padding=["16px", "24px", "32px"],
                flex="1",
            ),
            footer(),
            spacing="0",
            flex="1",
            min_width="0",
            min_height="100vh",
        ),
        spacing="0",
        width="100%",
        align="start",
        background=rx.color("gray", 1),
    )


def page_header(
    title: str | rx.Var[str],
    subtitle: str | rx.Var[str] | rx.Component = "",
    *actions: rx.Component,
    badge: rx.Component | None = None,
) -> rx.Component:
    return rx.flex(
        rx.vstack(
            rx.hstack(
                rx.heading(title, size="7", weight="bold", id="page-title"),
                *([badge] if badge is not None else []),
                align="center",
                spacing="3",
            ),
            subtitle
            if isinstance(subtitle, rx.Component)
            else rx.text(subtitle, color_scheme="gray", size="3"),
            spacing="1",
            min_width="0",
            flex="1",
        ),
        rx.hstack(*actions, spacing="2", align="center", flex_shrink="0"),
        direction=rx.breakpoints(initial="column", md="row"),
        gap="4",
        width="100%",
        align=rx.breakpoints(initial="start", md="end"),
    )
