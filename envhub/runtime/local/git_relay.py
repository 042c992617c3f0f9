"""The host end of git's credential helper in a local environment (standard library only).

The supervisor (``supervisor.py``) forks this relay while it is still in the
host's network namespace, then makes the environment's own namespace, binds
``127.0.0.1:<port>`` there and hands the listening socket over (``SCM_RIGHTS``).
So the relay accepts connections from inside the environment, and calls
envhub's API (``POST /api/v1/environment-identity/git-credentials``) from
outside it, where envhub is reachable; nothing else of the host's network is.

Each request carries a fresh environment identity (``domain/git_credentials.py``)
signed with the environment's key, which only this process holds, in memory.
The sandbox sees neither the key nor the identity, only what git needs: the
username and the short-lived token, in git's credential-helper format. A
refusal comes back as one ``error=`` line, which the helper prints.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import hmac
import json
import os
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from typing import Any

MAX_REQUEST = 16384
TIMEOUT = 15.0
IDENTITY_TTL = 60
FIELDS = ("protocol", "host", "path")
ANSWER_FIELDS = ("username", "password", "password_expiry_utc")
_PR_SET_PDEATHSIG = 1


def parse_request(data: bytes) -> dict[str, str]:
    """The fields envhub needs from git's request (``key=value`` lines up to a blank line)."""
    fields: dict[str, str] = {}
    for raw in data.decode("utf-8", "replace").split("\n"):
        line = raw.rstrip("\r")
        if not line:
            break
        key, sep, value = line.partition("=")
        if sep and key in FIELDS and "\0" not in value:
            fields[key] = value
    return fields


def answer_lines(answer: dict[str, Any]) -> bytes:
    """envhub's answer as git reads it; a value that would break the format is left out."""
    lines = []
    for key in ANSWER_FIELDS:
        value = str(answer.get(key) or "")
        if value and not any(c in value for c in "\n\r\0"):
            lines.append(f"{key}={value}\n")
    return "".join(lines).encode()


def error_line(message: str) -> bytes:
    return ("error=" + " ".join(message.split())[:500] + "\n").encode()


def identity(key: bytes, environment_id: int, now: float) -> str:
    """As ``envhub.domain.git_credentials.mint_identity`` makes it (this file imports nothing of envhub)."""
    expires = int(now) + IDENTITY_TTL
    signature = hmac.new(key, f"{environment_id}.{expires}".encode(), hashlib.sha256).hexdigest()
    return f"ehe_{environment_id}.{expires}.{signature}"


class Forwarder:
    def __init__(self, config: dict[str, Any]) -> None:
        self.url = str(config["url"])
        self.key = bytes.fromhex(str(config["key"]))
        self.environment_id = int(config["environment"])
        # No proxy from any environment variable: envhub is reached directly.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def ask(self, request: dict[str, str]) -> bytes:
        body = json.dumps(request).encode()
        headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {identity(self.key, self.environment_id, time.time())}",
        }
        call = urllib.request.Request(self.url, data=body, headers=headers, method="POST")  # noqa: S310
        try:
            with self._opener.open(call, timeout=TIMEOUT) as response:
                return answer_lines(json.loads(response.read(65536)))
        except urllib.error.HTTPError as exc:
            try:
                said = json.loads(exc.read(65536))
                text = f"{said.get('message', '')} ({said.get('code', exc.code)}). {said.get('hint', '')}"
            except (ValueError, OSError, AttributeError):
                text = f"envhub answered HTTP {exc.code}"
            return error_line(text)
        except (OSError, ValueError) as exc:
            return error_line(f"envhub did not answer: {exc}")


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\n\n" not in data and len(data) < MAX_REQUEST:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def serve(listener: socket.socket, forwarder: Forwarder) -> None:
    """One connection at a time: git asks rarely, and a slow client is cut off by the timeout."""
    while True:
        conn, _address = listener.accept()
        with conn:
            try:
                conn.settimeout(5.0)
                request = parse_request(_read_request(conn))
                if "protocol" in request and "host" in request:
                    reply = forwarder.ask(request)
                else:
                    reply = error_line("git sent no protocol and host")
                conn.sendall(reply)
            except OSError:
                continue


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def start(config: dict[str, Any]) -> socket.socket:
    """Fork the relay (call this in the host's network namespace); send it the listener with
    :func:`hand_over` through the socket returned."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    parent = os.getpid()
    if os.fork() == 0:
        try:
            ours.close()
            _die_with_parent()
            if os.getppid() != parent:
                os._exit(0)
            keep = theirs.fileno()
            os.closerange(3, keep)  # the supervisor's descriptors (status, listeners, the app's)
            os.closerange(keep + 1, os.sysconf("SC_OPEN_MAX"))
            _message, fds, _flags, _address = socket.recv_fds(theirs, 16, 1)
            theirs.close()
            if fds:
                serve(socket.socket(fileno=fds[0]), Forwarder(config))
        except Exception as exc:
            print(f"envhub: the git credential relay stopped: {exc}", file=sys.stderr, flush=True)
        finally:
            os._exit(0)
    theirs.close()
    return ours


def hand_over(channel: socket.socket, port: int) -> None:
    """Bind ``127.0.0.1:port`` (in the environment's namespace, where this is called) for the relay."""
    try:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        with contextlib.suppress(OSError):
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(16)
        socket.send_fds(channel, [b"L"], [listener.fileno()])
        listener.close()
    finally:
        channel.close()
