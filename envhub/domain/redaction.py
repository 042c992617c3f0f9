"""Which environment variable values may be shown to a person looking inside an environment.

Inspection shows a container's variables; their values are redacted on the
server, before any face (dashboard, REST, CLI, MCP) gets them, when

* they come from a Secret (the runtime reports the reference, never the value);
* the name looks like a credential (``*TOKEN*``, ``*PASSWORD*``, ``*SECRET*``,
  ``*KEY*``, ``*CREDENTIAL*``, ``*AUTH*``, ...);
* the value looks like one whatever its name: a URL with a password
  (``postgres://app:s3cret@db/app`` keeps all but the password), a private key,
  or a well-known token format (GitHub, Slack, AWS, JWT...).

Everything else is shown as configured.
"""

from __future__ import annotations

import re
from typing import NamedTuple

MASK = "••••••"
_SECRET_NAME = re.compile(
    r"TOKEN|PASSW|PWD|SECRET|(^|_)KEY($|_)|APIKEY|API_KEY|PRIVATE|CREDENTIAL|AUTH|COOKIE|SESSION|SALT"
    r"|SIGNATURE|CERT|(^|_)DSN($|_)|CONNECTION_STRING",
    re.IGNORECASE,
)
# scheme://user:password@host...: the password part.
_URL_PASSWORD = re.compile(
    r"^(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)(?P<secret>[^@\s]+)(?P<tail>@.*)$"
)
_TOKEN_VALUE = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----"
    r"|\b(gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|xox[abprs]-[A-Za-z0-9-]{10,}"
    r"|AKIA[0-9A-Z]{16}|sk-[A-Za-z0-9_-]{20,}|eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.)"
)


class Shown(NamedTuple):
    value: str
    redacted: bool


def secret_looking_name(name: str) -> bool:
    return _SECRET_NAME.search(name) is not None


def shown_value(name: str, value: str, *, from_secret: bool = False) -> Shown:
    """``value`` as a person may see it, and whether anything was hidden."""
    if from_secret:
        return Shown(MASK, True)
    if not value:
        return Shown("", False)
    if secret_looking_name(name) or _TOKEN_VALUE.search(value):
        return Shown(MASK, True)
    url = _URL_PASSWORD.match(value)
    if url:
        return Shown(url.group("head") + MASK + url.group("tail"), True)
    return Shown(value, False)
