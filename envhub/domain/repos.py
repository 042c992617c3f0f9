"""Which repository URLs a project may name, decided before anything fetches one.

Remote URLs only: ``https://``, ``ssh://`` and scp-like ``user@host:path``.
A local path or ``file://`` URL reads envhub's own machine, so it needs the
operator's ``ENVHUB_ALLOW_LOCAL_REPOS``. Credentials never ride in a URL: the
URL is shown in the dashboard, the audit log and step details. A token for an
https repository belongs in the project secret ``GIT_TOKEN``.

Messages never repeat the URL they refuse, so a refused token goes nowhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

from envhub.errors import RepoUrlRefused


class RepoKind(StrEnum):
    remote = "remote"
    local = "local"


class Refusal(StrEnum):
    """Why a URL was refused: stable values, sent in ``details["reason"]``."""

    credentials = "credentials"
    local_not_allowed = "local_not_allowed"
    unsupported = "unsupported"


# Project secrets an https fetch authenticates with (HTTP basic; the user name defaults
# to x-access-token). envhub uses them itself and does not pass them to the workload.
GIT_TOKEN_SECRET = "GIT_TOKEN"  # noqa: S105 - the name of a secret, not one
GIT_USERNAME_SECRET = "GIT_USERNAME"  # noqa: S105 - likewise

_MESSAGES = {
    Refusal.credentials: "credentials are not allowed in a repository URL",
    Refusal.local_not_allowed: "local paths and file:// URLs are turned off on this envhub",
    Refusal.unsupported: "must be an https://, ssh:// or git@host:path URL",
}
_HINTS = {
    Refusal.credentials: (
        "Remove the user name, password or token from the URL and store the token as the "
        f"project secret {GIT_TOKEN_SECRET}; envhub sends it when it fetches."
    ),
    Refusal.local_not_allowed: (
        "Use the repository's https:// or ssh:// URL; an operator can allow local "
        "repositories with ENVHUB_ALLOW_LOCAL_REPOS=true."
    ),
    Refusal.unsupported: (
        "Use an https://, ssh:// or git@host:path URL (plain http://, git:// and ext:: are refused)."
    ),
}

# Host names and ssh user names: letters, digits, '.', '-', '_'; never a leading '-'
# (git would hand it to ssh as an option).
_HOST = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")
_USER = _HOST
_SCP = re.compile(r"^(?:(?P<user>[^@/:]+)@)?(?P<host>[^@/:]+):(?P<path>[^:-].*)$")
# "<transport>::<address>" makes git run the remote helper named <transport> (ext:: runs a command).
_HELPER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9+.-]*::")


@dataclass(frozen=True, slots=True)
class RepoSource:
    url: str
    kind: RepoKind


def refusal(reason: Refusal) -> RepoUrlRefused:
    return RepoUrlRefused(
        _MESSAGES[reason],
        hint=_HINTS[reason],
        details={"repo_url": _MESSAGES[reason], "reason": reason.value},
    )


def repo_source(value: str) -> RepoSource:
    """Classify a repository URL, or raise :class:`RepoUrlRefused` (never quoting it)."""
    url = value.strip()
    if not url or url.startswith("-") or any(ch.isspace() or not ch.isprintable() for ch in url):
        raise refusal(Refusal.unsupported)
    if _HELPER.match(url):
        raise refusal(Refusal.unsupported)
    if url.startswith("/"):
        return RepoSource(url, RepoKind.local)
    scheme, sep, _ = url.partition("://")
    if sep:
        return _with_scheme(url, scheme.lower())
    if "@" in url and ":" in url.partition("@")[0]:
        raise refusal(Refusal.credentials)  # user:password@host:path
    scp = _SCP.match(url)
    if scp is None:
        raise refusal(Refusal.unsupported)  # relative paths and everything else
    user, host = scp.group("user"), scp.group("host")
    if (user is not None and not _USER.fullmatch(user)) or not _HOST.fullmatch(host):
        raise refusal(Refusal.unsupported)
    return RepoSource(url, RepoKind.remote)


def _with_scheme(url: str, scheme: str) -> RepoSource:
    parts = urlsplit(url)
    if scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise refusal(Refusal.unsupported)
        return RepoSource(url, RepoKind.local)
    if scheme not in ("https", "ssh"):
        raise refusal(Refusal.unsupported)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    # A query string is where some servers take tokens (?private_token=): refused with them.
    if (at and (scheme == "https" or ":" in userinfo or not _USER.fullmatch(userinfo))) or parts.query:
        raise refusal(Refusal.credentials)
    host = parts.hostname or ""
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise refusal(Refusal.unsupported) from None
    if not hostport or not (_HOST.fullmatch(host) or hostport.startswith("[")) or parts.fragment:
        raise refusal(Refusal.unsupported)
    if parts.path in ("", "/"):
        raise refusal(Refusal.unsupported)
    return RepoSource(url, RepoKind.remote)


def require_allowed(url: str | None, *, allow_local: bool) -> RepoSource | None:
    """The source of ``url`` if this envhub may fetch it (``None`` for no repository)."""
    if url is None:
        return None
    source = repo_source(url)
    if source.kind is RepoKind.local and not allow_local:
        raise refusal(Refusal.local_not_allowed)
    return source
