"""How errors reach the person: a code, what happened, and what to do next.

Services raise :class:`EnvhubError` with a stable code; this module turns one
into a small view model (for callouts and field messages) or a toast. What a
code means (HTTP status, hint, advice for a failed environment) is registered
once, in ``envhub/errors.py``.
"""

from __future__ import annotations

import logging
from typing import TypedDict

import reflex as rx

from envhub.errors import EnvhubError, error_info

log = logging.getLogger(__name__)


class ErrorView(TypedDict):
    code: str
    message: str
    hint: str


NO_ERROR = ErrorView(code="", message="", hint="")


def error_view(exc: EnvhubError) -> ErrorView:
    return ErrorView(code=exc.code, message=exc.message, hint=exc.hint)


def unexpected_view(exc: Exception) -> ErrorView:
    log.exception("unexpected error in a dashboard action", exc_info=exc)
    return ErrorView(
        code="internal_error",
        message=f"unexpected error: {type(exc).__name__}",
        hint=error_info("internal_error").hint,
    )


def error_toast(error: ErrorView) -> rx.event.EventSpec:
    description = error["message"] + (f" — {error['hint']}" if error["hint"] else "")
    return rx.toast.error(f"Failed ({error['code']})", description=description, duration=8000)


def field_of(exc: EnvhubError, aliases: dict[str, str]) -> dict[str, str]:
    """The form fields an error is about, with the message to show under each.

    Services name fields in ``details``: either ``{"field": "project name"}`` or,
    for spec validation, one entry per invalid field (``{"ref": "..."}``).
    ``aliases`` maps those names to the form's field keys.
    """
    found: dict[str, str] = {}
    named = exc.details.get("field")
    if isinstance(named, str) and named in aliases:
        found[aliases[named]] = exc.message
    for key, value in exc.details.items():
        if key in aliases and isinstance(value, str) and key != "field":
            found.setdefault(aliases[key], value)
    return found
