"""The environment page's terminal panel and the recording player.

Both are React components in ``assets/`` (xterm.js needs the browser), loaded
client-side only through :class:`rx.NoSSRComponent`. Reflex copies ``assets/``
to the frontend's ``public/`` folder, hence the ``$/public/...`` library paths.
The terminal talks to ``/ws/terminal/...`` itself; the page only tells it which
environment, which containers, and whether the viewer may open a shell.
"""

from __future__ import annotations

from typing import Any

import reflex as rx

from envhub.ui.components.common import section

_XTERM = ["@xterm/xterm@5.5.0", "@xterm/addon-fit@0.10.0", "@xterm/addon-web-links@0.11.0"]


class XTerm(rx.NoSSRComponent):
    library = "$/public/terminal.jsx"
    tag = "EnvhubTerminal"
    is_default = False
    lib_dependencies: list[str] = _XTERM

    environment_id: rx.Var[int]
    containers: rx.Var[list[str]]
    color_mode: rx.Var[str]
    can_shell: rx.Var[bool]
    height: rx.Var[str]


class AsciicastPlayer(rx.NoSSRComponent):
    library = "$/public/terminal-player.jsx"
    tag = "EnvhubPlayer"
    is_default = False
    lib_dependencies: list[str] = _XTERM

    src: rx.Var[str]
    color_mode: rx.Var[str]


def _color_mode() -> rx.Var:
    return rx.color_mode_cond(light="light", dark="dark")


def terminal_panel(S: Any) -> rx.Component:
    """The shell, once the environment runs; a note before that."""
    body = rx.cond(
        S.terminal_ready,
        XTerm.create(
            environment_id=S.environment_id,
            containers=S.terminal_containers,
            color_mode=_color_mode(),
            can_shell=S.can_shell,
            height="440px",
        ),
        rx.text(
            "The terminal opens once the environment is ready.",
            color_scheme="gray",
            size="2",
            id="terminal-unavailable",
        ),
    )
    hint = rx.text(
        "Sessions survive reloads for a few minutes · Ctrl+Shift+C / V to copy and paste",
        size="1",
        color_scheme="gray",
    )
    return section("Terminal", body, icon="square-terminal", actions=hint, id="terminal-panel")


def replay_dialog(S: Any) -> rx.Component:
    return rx.dialog.root(
        rx.dialog.content(
            rx.hstack(
                rx.dialog.title("Session recording", size="4", margin="0"),
                rx.spacer(),
                rx.dialog.close(rx.icon_button(rx.icon("x", size=16), variant="ghost", color_scheme="gray")),
                align="center",
                width="100%",
            ),
            rx.text(S.replay_label, size="2", color_scheme="gray", margin_bottom="12px"),
            rx.cond(S.replay_src != "", AsciicastPlayer.create(src=S.replay_src, color_mode=_color_mode())),
            max_width="min(1100px, 96vw)",
            id="replay-dialog",
        ),
        open=S.replay_src != "",
        on_open_change=S.close_replay,
    )
