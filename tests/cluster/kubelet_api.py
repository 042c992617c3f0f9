"""The test kubelet's HTTPS API, as kube-apiserver calls it for pods/log and pods/exec.

    GET /containerLogs/{ns}/{pod}/{container}?follow=&tailLines=&timestamps=&previous=&limitBytes=
    GET /exec/{ns}/{pod}/{container}?command=..&input=1&output=1&error=1&tty=1   (WebSocket)

Exec runs the command as a local process (in a PTY when tty=1). SPDY, which old
clients use for exec, is not implemented: the apiserver forwards a WebSocket
upgrade unchanged, so WebSocket clients (Python client, kubectl >= 1.30) work.
"""

from __future__ import annotations

import datetime
import select
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import wschannel as ws
from kubelet_exec import ExecSession, ExecTarget
from pki import CertPair


def _rfc3339(ts: float) -> str:
    dt = datetime.datetime.fromtimestamp(ts, datetime.UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond * 1000:09d}Z"


class LogBuffer:
    """Output of one container run, kept in memory, readable while it grows."""

    def __init__(self, max_bytes: int = 16 << 20) -> None:
        self._cond = threading.Condition()
        self._chunks: list[tuple[float, bytes]] = []
        self._base = 0  # stream index of _chunks[0] once old chunks were dropped
        self._size = 0
        self._max = max_bytes
        self.finished = False

    def write(self, data: bytes) -> None:
        with self._cond:
            self._chunks.append((time.time(), data))
            self._size += len(data)
            while self._size > self._max and len(self._chunks) > 1:
                self._size -= len(self._chunks.pop(0)[1])
                self._base += 1
            self._cond.notify_all()

    def finish(self) -> None:
        with self._cond:
            self.finished = True
            self._cond.notify_all()

    def start_index(self, tail_lines: int | None) -> int:
        with self._cond:
            if tail_lines is None:
                return self._base
            lines = 0
            for i in range(len(self._chunks) - 1, -1, -1):
                lines += self._chunks[i][1].count(b"\n")
                if lines > tail_lines:
                    return self._base + i + 1
            return self._base

    def read(self, start: int, wait: float) -> tuple[list[tuple[float, bytes]], int, bool]:
        """Chunks from `start` on (waiting up to `wait` s for some), next index, finished."""
        with self._cond:
            start = max(start, self._base)
            if start - self._base >= len(self._chunks) and not self.finished and wait > 0:
                self._cond.wait(wait)
            chunks = self._chunks[start - self._base :]
            return chunks, start + len(chunks), self.finished


class Runtime(Protocol):
    def exec_target(self, namespace: str, pod: str, container: str) -> ExecTarget | None: ...

    def log_buffer(self, namespace: str, pod: str, container: str, previous: bool) -> LogBuffer | None: ...


class KubeletServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, runtime: Runtime, tls: CertPair) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(tls.cert), str(tls.key))
        # Exec reads and writes one TLS connection from two threads. TLS 1.3's
        # post-handshake messages make that unsafe with OpenSSL; 1.2 without
        # tickets keeps the read and write sides independent.
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.options |= ssl.OP_NO_TICKET
        # The handshake happens in the handler thread, not in the accept loop.
        self.socket = ctx.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)
        self.runtime = runtime
        self._thread = threading.Thread(target=self.serve_forever, name="kubelet-api", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: KubeletServer

    def setup(self) -> None:
        conn = self.request
        assert isinstance(conn, ssl.SSLSocket)
        conn.settimeout(10)
        conn.do_handshake()
        conn.settimeout(None)
        super().setup()

    def log_message(self, format: str, *args: object) -> None:
        pass  # the apiserver logs every request already

    def _reply(self, code: int, text: str) -> None:
        body = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.split("/") if p]
        query = parse_qs(url.query)
        if parts == ["healthz"]:
            self._reply(200, "ok")
        elif len(parts) == 4 and parts[0] == "containerLogs":
            self._logs(parts[1], parts[2], parts[3], query)
        elif len(parts) == 4 and parts[0] == "exec":
            self._exec(parts[1], parts[2], parts[3], query)
        else:
            self._reply(404, f"test kubelet: no handler for {url.path}")

    do_POST = do_GET  # SPDY exec clients POST; they get a clear 400 below

    # -- logs ------------------------------------------------------------------
    def _logs(self, ns: str, pod: str, container: str, query: dict[str, list[str]]) -> None:
        def flag(name: str) -> bool:
            return query.get(name, ["false"])[0] in ("1", "true", "True")

        def number(name: str) -> int | None:
            return int(query[name][0]) if name in query else None

        buf = self.server.runtime.log_buffer(ns, pod, container, flag("previous"))
        if buf is None:
            self._reply(404, f"container {container} of pod {ns}/{pod} not found")
            return
        follow, stamps = flag("follow"), flag("timestamps")
        limit = number("limitBytes")
        since = number("sinceSeconds")
        min_ts = time.time() - since if since is not None else 0.0
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Connection", "close")  # body ends when we close
        self.end_headers()
        self.close_connection = True
        index, sent = buf.start_index(number("tailLines")), 0
        line_start = True  # a real kubelet stamps every line, not every write
        while True:
            chunks, index, finished = buf.read(index, wait=1.0 if follow else 0)
            parts = []
            for ts, data in chunks:
                if ts < min_ts:
                    continue
                if stamps:
                    stamp = _rfc3339(ts).encode() + b" "
                    lines = data.split(b"\n")
                    last = len(lines) - 1
                    data = b"\n".join(
                        (stamp if (i > 0 or line_start) and (line or i < last) else b"") + line
                        for i, line in enumerate(lines)
                    )
                    line_start = data.endswith(b"\n")
                parts.append(data)
            out = b"".join(parts)
            if limit is not None:
                out = out[: max(limit - sent, 0)]
            try:
                if out:
                    self.wfile.write(out)
                    sent += len(out)
            except OSError:
                return
            if not follow or finished or (limit is not None and sent >= limit):
                return
            if not chunks and self._peer_gone():
                return

    def _peer_gone(self) -> bool:
        # A log follower never sends anything after its request, so readability
        # means EOF (or a TLS close_notify): the client went away.
        readable, _, _ = select.select([self.connection], [], [], 0)
        return bool(readable)

    # -- exec ------------------------------------------------------------------
    def _exec(self, ns: str, pod: str, container: str, query: dict[str, list[str]]) -> None:
        target = self.server.runtime.exec_target(ns, pod, container)
        if target is None:
            self._reply(404, f"container {container} of pod {ns}/{pod} not found")
            return
        command = query.get("command", [])
        if not command:
            self._reply(400, "missing command")
            return
        if self.headers.get("Upgrade", "").lower() != "websocket":
            self._reply(
                400,
                "the envhub test kubelet speaks exec over WebSocket only "
                f"({', '.join(ws.SUPPORTED)}), not SPDY",
            )
            return
        proto = ws.pick_protocol(self.headers.get("Sec-WebSocket-Protocol"))
        if proto is None:
            self._reply(400, f"no supported subprotocol; want one of {ws.SUPPORTED}")
            return
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", ws.accept_key(self.headers.get("Sec-WebSocket-Key", "")))
        self.send_header("Sec-WebSocket-Protocol", proto)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True

        def on(name: str) -> bool:
            return query.get(name, ["0"])[0] in ("1", "true")

        channel = ws.ChannelSocket(self.rfile, self.wfile, proto)  # type: ignore[arg-type]
        ExecSession(
            channel,
            command,
            target,
            stdin=on("input"),
            tty=on("tty"),
            stdout=on("output"),
            stderr=on("error"),
        ).run(self.connection)
