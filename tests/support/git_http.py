"""git's smart HTTP protocol for the GitHub stub: real ``git http-backend`` (CGI) over bare repositories.

GitHub serves git beside its API (``https://github.com/<owner>/<name>.git``,
an Enterprise server the same on its own host); the stub does too, so a
test's real git clones and pushes with the tokens the stub's App issued.
Authentication is GitHub's: HTTP Basic, the token as the password, 401 with
``WWW-Authenticate`` when missing or wrong (git then asks its credential
helper), 403 when the token may read but the push needs ``contents: write``.
"""

from __future__ import annotations

import asyncio
import base64
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

PATH = re.compile(r"^/([^/]+)/([^/]+?)\.git/(info/refs|git-upload-pack|git-receive-pack)$")
# (full name, token, pushing) -> None when allowed, else the HTTP status to answer (401 or 403).
Authorize = Callable[[str, str, bool], int | None]


def is_git(path: str) -> bool:
    return PATH.match(path) is not None


def init_bare(root: Path, full_name: str, branch: str = "main") -> Path:
    """An empty bare repository for ``owner/name`` under ``root``."""
    path = root / f"{full_name}.git"
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", "--bare", "-b", branch, str(path)], check=True)
    return path


def _token(request: Request) -> str:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return ""
    try:
        _user, _, password = base64.b64decode(value).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return ""
    return password


async def serve(request: Request, root: Path, authorize: Authorize) -> Response:
    match = PATH.match(request.url.path)
    assert match is not None
    owner, name, what = match.groups()
    service = request.query_params.get("service", "")
    pushing = what == "git-receive-pack" or service == "git-receive-pack"
    refused = authorize(f"{owner}/{name}", _token(request), pushing)
    if refused == 401:
        return Response("Invalid username or token.\n", 401, {"WWW-Authenticate": 'Basic realm="GitHub"'})
    if refused is not None:
        return Response("Permission denied.\n", refused)
    body = await request.body()
    env = {
        "PATH": "/usr/bin:/bin",
        "GIT_PROJECT_ROOT": str(root),
        "GIT_HTTP_EXPORT_ALL": "1",
        "PATH_INFO": f"/{owner}/{name}.git/{what}",
        "REQUEST_METHOD": request.method,
        "QUERY_STRING": request.url.query,
        "CONTENT_TYPE": request.headers.get("content-type", ""),
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_CONTENT_ENCODING": request.headers.get("content-encoding", ""),
        "GIT_PROTOCOL": request.headers.get("git-protocol", ""),
        "REMOTE_USER": "x-access-token",
        "REMOTE_ADDR": request.client.host if request.client else "",
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "http.receivepack",
        "GIT_CONFIG_VALUE_0": "true",
    }
    done = await asyncio.to_thread(
        subprocess.run,
        ["git", "http-backend"],
        input=body,
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    head, payload = b"", done.stdout
    for separator in (b"\r\n\r\n", b"\n\n"):  # CGI headers end with a blank line
        before, found, after = done.stdout.partition(separator)
        if found:
            head, payload = before, after
            break
    status, headers = 200, {}
    for line in head.decode("latin-1").splitlines():
        key, _sep, value = line.partition(":")
        if key.lower() == "status":
            status = int(value.split()[0])
        elif key:
            headers[key.strip()] = value.strip()
    return Response(payload, status, headers)
