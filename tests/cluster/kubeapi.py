"""A minimal Kubernetes REST client for the test kubelet (stdlib only).

Raw JSON dicts instead of the `kubernetes` package's models: the kubelet patches
status subresources and posts bindings, where the generated client's models get in
the way (e.g. it fails to deserialize the Status returned by pods/binding).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

JSON = dict[str, Any]
SMP = "application/strategic-merge-patch+json"


class ApiError(Exception):
    def __init__(self, status: int, body: JSON) -> None:
        super().__init__(f"{status}: {body.get('message', body)}")
        self.status = status
        self.body = body


class KubeApi:
    def __init__(self, server: str, token: str, ca_file: Path) -> None:
        url = urlsplit(server)
        self._host = url.hostname or "127.0.0.1"
        self._port = url.port or 443
        self._ctx = ssl.create_default_context(cafile=str(ca_file))
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        self._watch_conn: http.client.HTTPSConnection | None = None
        self._lock = threading.Lock()
        self.server = server

    def _conn(self, timeout: float | None) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(self._host, self._port, context=self._ctx, timeout=timeout)

    def call(
        self, method: str, path: str, body: JSON | None = None, content_type: str = "application/json"
    ) -> JSON:
        """One request; raises ApiError on a non-2xx answer."""
        conn = self._conn(timeout=30)
        try:
            headers = dict(self._headers)
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                headers["Content-Type"] = content_type
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        try:
            obj: JSON = json.loads(raw) if raw else {}
        except ValueError:
            obj = {"message": raw.decode(errors="replace")}
        if resp.status >= 300:
            raise ApiError(resp.status, obj)
        return obj

    def get_or_none(self, path: str) -> JSON | None:
        try:
            return self.call("GET", path)
        except ApiError as e:
            if e.status == 404:
                return None
            raise

    def watch(self, path: str) -> Iterator[JSON]:
        """Yield watch events of `path` (which must carry ?watch=1...) until it ends.

        close_watch() from another thread ends it early.
        """
        conn = self._conn(timeout=None)
        with self._lock:
            self._watch_conn = conn
        try:
            conn.request("GET", path, headers=self._headers)
            resp = conn.getresponse()
            if resp.status != 200:
                raise ApiError(resp.status, {"message": resp.read().decode(errors="replace")})
            while line := resp.readline():
                if line.strip():
                    yield json.loads(line)
        finally:
            with self._lock:
                self._watch_conn = None
            conn.close()

    def close_watch(self) -> None:
        with self._lock:
            conn = self._watch_conn
        if conn is not None and conn.sock is not None:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
