"""What the CLI says when something fails, and the exit status scripts can rely on.

Every failure is a :class:`CliError` with the server's stable ``code`` (or the
CLI's own, e.g. ``server_unreachable``), its message and the next step. The
exit status follows the kind of failure, never the wording:

====  ==========================================================
0     success
1     any other failure
2     the command line is wrong (typer's usage errors)
3     not signed in, or the token was refused (``unauthenticated``)
4     not allowed (``forbidden``; a denied device sign-in)
5     not found
6     conflict: the thing is not in a state that allows this
7     the request was invalid (``validation_failed`` and friends)
8     envhub or what it depends on cannot answer now (retry later)
9     timed out (an expired device code)
10    not supported here (e.g. kubectl access on the local runtime)
130   interrupted (Ctrl-C)
====  ==========================================================

``envhub shell`` and ``envhub exec`` exit with the remote command's status,
and with 255 when envhub itself failed (as ``ssh`` does), so the two never mix.
"""

from __future__ import annotations

from typing import Any

OK = 0
FAILURE = 1
USAGE = 2
UNAUTHENTICATED = 3
FORBIDDEN = 4
NOT_FOUND = 5
CONFLICT = 6
INVALID = 7
UNAVAILABLE = 8
TIMED_OUT = 9
UNSUPPORTED = 10
INTERRUPTED = 130
REMOTE_FAILURE = 255

_BY_CODE = {
    "not_supported": UNSUPPORTED,
    "unauthenticated": UNAUTHENTICATED,
    "not_signed_in": UNAUTHENTICATED,
    "device_access_denied": FORBIDDEN,
    "device_expired_token": TIMED_OUT,
    "invalid_transition": CONFLICT,
    "rate_limited": UNAVAILABLE,
}
_BY_STATUS = {400: INVALID, 401: UNAUTHENTICATED, 403: FORBIDDEN, 404: NOT_FOUND, 409: CONFLICT, 422: INVALID}

NEXT_STEP = {
    UNAUTHENTICATED: "Sign in with `envhub login` (or set ENVHUB_TOKEN).",
    UNAVAILABLE: "Try again in a moment; if it persists, check that envhub is running.",
}


def exit_status(code: str, http_status: int | None) -> int:
    if code in _BY_CODE:
        return _BY_CODE[code]
    if http_status is None:
        return FAILURE
    if http_status in _BY_STATUS:
        return _BY_STATUS[http_status]
    if http_status == 429 or http_status >= 500:
        return UNAVAILABLE
    return FAILURE


class CliError(Exception):
    """A failure to report: ``code``, ``message``, ``hint`` (the next step) and the exit status."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        hint: str = "",
        http_status: int | None = None,
        exit_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.exit_code = exit_code if exit_code is not None else exit_status(code, http_status)
        self.hint = hint or NEXT_STEP.get(self.exit_code, "")
        self.http_status = http_status

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "hint": self.hint, "exit_code": self.exit_code}
