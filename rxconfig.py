"""Reflex configuration for envhub's web process.

Ports and URLs come from envhub's launcher (``python -m envhub.launcher``) via
the REFLEX_*/ENVHUB_* environment; the defaults suit ``make run``.
"""

import os
from pathlib import Path

import reflex as rx

_root = Path(__file__).resolve().parent
_bun = _root / ".tools" / "node_modules" / ".bin" / "bun"

config = rx.Config(
    app_name="envhub",
    telemetry_enabled=False,
    show_built_with_reflex=False,
    bun_path=_bun if _bun.exists() else None,
    frontend_port=int(os.environ.get("ENVHUB_FRONTEND_PORT", "3000")),
    backend_port=int(os.environ.get("ENVHUB_BACKEND_PORT", "8000")),
    default_color_mode="system",
    plugins=[
        rx.plugins.RadixThemesPlugin(
            theme=rx.theme(
                accent_color="indigo",
                gray_color="slate",
                radius="medium",
                scaling="100%",
                has_background=True,
            )
        )
    ],
    disable_plugins=[rx.plugins.SitemapPlugin],
)
