"""Where the CLI keeps what it knows between runs: servers, and the token for each.

Non-secret facts (the default server, who is signed in where, the token's id)
live in ``$XDG_CONFIG_HOME/envhub/hosts.json``. The token itself goes to the
OS keyring when one is usable, else to ``tokens.json`` beside it; the folder
is 0700 and both files 0600. ``ENVHUB_TOKEN`` and ``ENVHUB_SERVER`` override
everything stored (agents, CI), and nothing is written for them.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from envhub.cli.errors import INVALID, CliError

KEYRING_SERVICE = "envhub"
TOKEN_VARIABLE = "ENVHUB_TOKEN"  # noqa: S105 - the variable's name, not a token
SERVER_VARIABLE = "ENVHUB_SERVER"


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "envhub"


def normalize_server(url: str) -> str:
    """``host[:port]`` or a URL, as ``scheme://host[:port][/path]`` without a trailing slash."""
    url = url.strip().rstrip("/")
    if "://" not in url:
        host = urlsplit(f"//{url}").hostname or ""
        url = ("http://" if host in ("localhost", "127.0.0.1", "::1") else "https://") + url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CliError(
            "invalid_server",
            f"{url!r} is not an envhub URL",
            hint="Give the dashboard's address, e.g. `--server https://envhub.example.com`.",
            exit_code=INVALID,
        )
    return url


def _private_dir() -> Path:
    folder = config_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    if stat.S_IMODE(folder.stat().st_mode) != 0o700:
        folder.chmod(0o700)
    return folder


def _read(path: Path) -> dict[str, Any]:
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _write_private(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` in one rename with a file that was 0600 from its first byte."""
    scratch = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(data, out, indent=2)
    os.replace(scratch, path)


# -- the OS keyring, when there is a usable one ----------------------------------


def _keyring() -> Any | None:
    try:
        import keyring
        from keyring.backends import fail
    except ImportError:  # pragma: no cover - a dependency of the CLI
        return None
    backend = keyring.get_keyring()
    if isinstance(backend, fail.Keyring) or getattr(backend, "priority", 0) <= 0:
        return None
    if type(backend).__name__ == "ChainerBackend" and not getattr(backend, "backends", []):
        return None
    return keyring


@dataclass(frozen=True, slots=True)
class Login:
    server: str
    token: str
    user: str = ""
    token_id: int | None = None
    stored_in: str = ""  # keyring | a file path | ENVHUB_TOKEN


def hosts_path() -> Path:
    return config_dir() / "hosts.json"


def tokens_path() -> Path:
    return config_dir() / "tokens.json"


def default_server() -> str | None:
    configured = os.environ.get(SERVER_VARIABLE)
    if configured:
        return normalize_server(configured)
    value = _read(hosts_path()).get("default")
    return str(value) if value else None


def save(server: str, token: str, *, user: str, token_id: int | None) -> str:
    """Remember the sign-in; returns where the token went (``keyring`` or the file's path)."""
    folder = _private_dir()
    stored_in = ""
    keyring = _keyring()
    if keyring is not None:
        try:
            keyring.set_password(KEYRING_SERVICE, server, token)
            stored_in = "keyring"
        except Exception:  # any backend failure: fall back to the private file
            stored_in = ""
    if not stored_in:
        tokens = _read(tokens_path())
        tokens[server] = token
        _write_private(tokens_path(), tokens)
        stored_in = str(tokens_path())
    hosts = _read(hosts_path())
    hosts.setdefault("hosts", {})[server] = {
        "user": user,
        "token_id": token_id,
        "stored_in": "keyring" if stored_in == "keyring" else "file",
    }
    hosts["default"] = server
    _write_private(folder / "hosts.json", hosts)
    return stored_in


def load(server: str) -> Login | None:
    """The token to use for ``server``: ``ENVHUB_TOKEN``, else the stored one; None if neither."""
    env_token = os.environ.get(TOKEN_VARIABLE)
    if env_token:
        return Login(server, env_token.strip(), stored_in=TOKEN_VARIABLE)
    entry = _read(hosts_path()).get("hosts", {}).get(server)
    token: str | None = None
    where = ""
    if entry and entry.get("stored_in") == "keyring":
        keyring = _keyring()
        if keyring is not None:
            with contextlib.suppress(Exception):
                token = keyring.get_password(KEYRING_SERVICE, server)
            where = "keyring"
    if token is None:
        value = _read(tokens_path()).get(server)
        token, where = (str(value), str(tokens_path())) if value else (None, "")
    if token is None:
        return None
    entry = entry or {}
    return Login(server, token, str(entry.get("user") or ""), entry.get("token_id"), where)


def forget(server: str) -> bool:
    """Drop everything stored for ``server``; whether there was anything."""
    had = False
    keyring = _keyring()
    if keyring is not None:
        with contextlib.suppress(Exception):
            if keyring.get_password(KEYRING_SERVICE, server) is not None:
                keyring.delete_password(KEYRING_SERVICE, server)
                had = True
    tokens = _read(tokens_path())
    if tokens.pop(server, None) is not None:
        had = True
        _write_private(tokens_path(), tokens)
    hosts = _read(hosts_path())
    if hosts.get("hosts", {}).pop(server, None) is not None:
        had = True
    if hosts.get("default") == server:
        remaining = list(hosts.get("hosts", {}))
        hosts["default"] = remaining[0] if remaining else None
    if hosts_path().exists():
        _write_private(hosts_path(), hosts)
    return had
