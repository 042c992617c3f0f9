"""Reflex configuration for envhub's web process.

Ports and URLs come from envhub's launcher (``python -m envhub.launcher``) via
the REFLEX_*/ENVHUB_* environment; the defaults suit ``make run``.
"""

import os
from pathlib import Path
from urllib.parse import urlsplit

import reflex as rx

_root = Path(__file__).resolve().parent
_bun = _root / ".tools" / "node_modules" / ".bin" / "bun"
# Only envhub's own origin may make credentialed cross-origin requests; Reflex's
# default ("*" with credentials) would let any site read the API with a person's cookie.
_base = urlsplit(os.environ.get("ENVHUB_BASE_URL", "http://localhost:3000"))
_origin = f"{_base.scheme}://{_base.netloc}"

config = rx.Config(
    app_name="envhub",
    telemetry_enabled=False,
    show_built_with_reflex=False,
    bun_path=_bun if _bun.exists() else None,
    frontend_port=int(os.environ.get("ENVHUB_FRONTEND_PORT", "3000")),
    backend_port=int(os.environ.get("ENVHUB_BACKEND_PORT", "8000")),
    default_color_mode="system",
    cors_allowed_origins=[_origin],
    trusted_proxy_hops=int(os.environ.get("ENVHUB_TRUSTED_PROXY_HOPS", "0") or 0),
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
