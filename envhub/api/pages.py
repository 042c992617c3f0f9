"""The few plain HTML pages envhub answers outside the dashboard.

The gateway's "not ready" and "no such environment", and the sign-in
hand-over's refusals: small, self-contained (no scripts, no assets, no
cookies), readable in a terminal browser too, and never cached.
"""

from __future__ import annotations

import html

from starlette.responses import HTMLResponse

_STYLE = (
    "body{font-family:system-ui,sans-serif;background:#0f1115;color:#e6e6e6;display:flex;"
    "min-height:100vh;align-items:center;justify-content:center;margin:0}main{max-width:36rem;"
    "padding:2rem;border:1px solid #2a2f3a;border-radius:12px;background:#161a22}h1{font-size:1.25rem;"
    "margin:0 0 .75rem}p{line-height:1.5;color:#b8bcc6}a{color:#8ab4ff}small{color:#7d8494}"
)


def notice_html(status: int, title: str, body_html: str, *, refresh: int = 0, source: str = "envhub") -> str:
    """The page; ``body_html`` is already escaped (it may hold markup of the caller's)."""
    meta = f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""
    return (
        f'<!doctype html><html><head><meta charset="utf-8">{meta}'
        f'<title>{html.escape(title)} · envhub</title><meta name="viewport" content="width=device-width">'
        f"<style>{_STYLE}</style></head><body><main><h1>{html.escape(title)}</h1>{body_html}"
        f"<small>{html.escape(source)} · HTTP {status}</small></main></body></html>"
    )


def notice_page(status: int, title: str, message: str, *, hint: str = "") -> HTMLResponse:
    body = f"<p>{html.escape(message)}</p>" + (f"<p>{html.escape(hint)}</p>" if hint else "")
    return HTMLResponse(
        notice_html(status, title, body), status_code=status, headers={"cache-control": "no-store"}
    )
