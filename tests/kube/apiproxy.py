"""A TLS proxy in front of the test apiserver that misbehaves on request.

It forwards every request byte for byte (one request per connection, so the
response ends when the apiserver closes it), and can instead:

* answer the next N requests matching a path with an error status
  (transient 503s, conflicts) - the client's retries are then visible here;
* answer the next watch of a path with a ``410 Gone`` ERROR event, as an
  apiserver does when a watch's resourceVersion is too old;
* play an exec server that does not know ``v5.channel.k8s.io``: either like a
  pre-1.30 kubelet (picks v4 from the offer), or like a strict intermediary
  that refuses the handshake outright when v5 is offered.

Everything else is the real apiserver (and the test kubelet behind it), so the
code under test runs unchanged, with a kubeconfig that points here.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.kube.helpers import load_cluster_module

V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"


@dataclass
class Fault:
    matches: Callable[[str, str], bool]  # (method, path with query) -> applies?
    status: int
    times: int


@dataclass
class Seen:
    method: str
    path: str
    status: int | None = None
    at: float = field(default_factory=time.monotonic)


@dataclass
class ProxyState:
    faults: list[Fault] = field(default_factory=list)
    expire_watches: dict[str, int] = field(default_factory=dict)  # path prefix -> how many more
    exec_mode: str | None = None  # None | "old-kubelet" | "strict"
    seen: list[Seen] = field(default_factory=list)
    offers: list[str] = field(default_factory=list)  # Sec-WebSocket-Protocol headers of exec requests
    lock: threading.Lock = field(default_factory=threading.Lock)


class ApiProxy:
    def __init__(self, cluster: Any, workdir: Path) -> None:
        pki = load_cluster_module().TestPKI(workdir / "proxy-pki")
        serving = pki.serving_cert("proxy", dns=["localhost"], ips=["127.0.0.1"])
        self.ca_cert = pki.ca.cert
        upstream = urlsplit(cluster.server)
        self.state = ProxyState()
        self._server = _Server(
            state=self.state,
            serving=(serving.cert, serving.key),
            upstream=(upstream.hostname or "127.0.0.1", upstream.port or 443),
            upstream_ca=cluster.ca_cert,
        )
        self.server = f"https://127.0.0.1:{self._server.server_address[1]}"
        self.kubeconfig = workdir / "proxy-kubeconfig"
        config = json.loads(Path(cluster.kubeconfig).read_text())
        config["clusters"][0]["cluster"] = {
            "server": self.server,
            "certificate-authority-data": base64.b64encode(self.ca_cert.read_bytes()).decode(),
        }
        self.kubeconfig.write_text(json.dumps(config))
        self._thread = threading.Thread(target=self._server.serve_forever, name="apiproxy", daemon=True)

    def __enter__(self) -> ApiProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- misbehaviour ----------------------------------------------------------
    def fail(self, status: int, *, times: int, method: str = "GET", path: str) -> None:
        """Answer the next ``times`` requests whose path matches the regex ``path`` with ``status``."""
        pattern = re.compile(path)
        with self.state.lock:
            self.state.faults.append(
                Fault(lambda m, p: m == method and bool(pattern.search(p)), status, times)
            )

    def expire_next_watch(self, path_prefix: str) -> None:
        with self.state.lock:
            self.state.expire_watches[path_prefix] = self.state.expire_watches.get(path_prefix, 0) + 1

    def requests(self, method: str | None = None, path: str = "") -> list[Seen]:
        with self.state.lock:
            return [s for s in self.state.seen if (method is None or s.method == method) and path in s.path]


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        *,
        state: ProxyState,
        serving: tuple[Path, Path],
        upstream: tuple[str, int],
        upstream_ca: Path,
    ) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(serving[0]), str(serving[1]))
        # WebSockets are pumped by two threads on one connection: TLS 1.2 without
        # tickets keeps reads and writes independent (as the test kubelet does).
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.options |= ssl.OP_NO_TICKET
        self.socket = context.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)
        self.state = state
        self.upstream = upstream
        self.upstream_context = ssl.create_default_context(cafile=str(upstream_ca))
        self.upstream_context.maximum_version = ssl.TLSVersion.TLSv1_2


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        conn = self.request
        assert isinstance(conn, ssl.SSLSocket)
        conn.settimeout(10)
        conn.do_handshake()
        conn.settimeout(None)
        super().setup()

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _answer(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def _status(self, code: int, reason: str, message: str) -> bytes:
        return json.dumps(
            {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
             "message": message, "reason": reason, "code": code}
        ).encode()  # fmt: skip

    def _record(self, status: int | None) -> None:
        with self.server.state.lock:
            self.server.state.seen.append(Seen(self.command, self.path, status))

    def _misbehave(self) -> bool:
        state = self.server.state
        with state.lock:
            fault = next(
                (f for f in state.faults if f.times > 0 and f.matches(self.command, self.path)), None
            )
            if fault is not None:
                fault.times -= 1
            expired = None
            if "watch=true" in self.path or "watch=1" in self.path:
                expired = next(
                    (p for p, n in state.expire_watches.items() if n > 0 and self.path.startswith(p)), None
                )
                if expired is not None:
                    state.expire_watches[expired] -= 1
        if fault is not None:
            self._record(fault.status)
            reason = {409: "Conflict", 503: "ServiceUnavailable", 429: "TooManyRequests"}.get(
                fault.status, ""
            )
            self._answer(fault.status, self._status(fault.status, reason, f"injected {fault.status}"))
            return True
        if expired is not None:
            self._record(410)
            event = {
                "type": "ERROR",
                "object": json.loads(self._status(410, "Expired", "too old resource version")),
            }
            self._answer(200, json.dumps(event).encode() + b"\n")
            return True
        return False

    def _exec_offer(self) -> bool:
        """Apply the exec mode to the WebSocket offer; True when the request was answered here."""
        state = self.server.state
        offer = self.headers.get("Sec-WebSocket-Protocol", "")
        with state.lock:
            state.offers.append(offer)
        protocols = [p.strip() for p in offer.split(",") if p.strip()]
        if state.exec_mode == "strict" and V5 in protocols:
            self._record(400)
            message = (
                "unable to upgrade: unable to negotiate protocol: "
                f"client supports {protocols}, server supports [{V4}]"
            )
            self._answer(400, self._status(400, "BadRequest", message))
            return True
        if state.exec_mode == "old-kubelet":
            del self.headers["Sec-WebSocket-Protocol"]
            self.headers["Sec-WebSocket-Protocol"] = ",".join(p for p in protocols if p != V5)
        return False

    def _forward(self) -> None:
        if self._misbehave():
            return
        upgrade = self.headers.get("Upgrade", "").lower() == "websocket"
        if upgrade and self._exec_offer():
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        raw = socket.create_connection(self.server.upstream, timeout=30)
        upstream = self.server.upstream_context.wrap_socket(raw, server_hostname=self.server.upstream[0])
        upstream.settimeout(None)
        lines = [f"{self.command} {self.path} HTTP/1.1"]
        for name, value in self.headers.items():
            if name.lower() != "connection" or upgrade:
                lines.append(f"{name}: {value}")
        if not upgrade:
            lines.append("Connection: close")  # the response then ends when the apiserver closes
        upstream.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        self._record(None)
        self.close_connection = True
        pumps = []
        if upgrade:
            pumps.append(threading.Thread(target=self._pump_up, args=(upstream,), daemon=True))
            pumps[-1].start()
        try:
            while chunk := upstream.recv(65536):
                self.wfile.write(chunk)
                self.wfile.flush()
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                upstream.close()
            for pump in pumps:
                pump.join(timeout=2)

    def _pump_up(self, upstream: ssl.SSLSocket) -> None:
        try:
            while chunk := self.rfile.read1(65536):
                upstream.sendall(chunk)
        except (OSError, ValueError):
            pass
        with contextlib.suppress(OSError):
            upstream.shutdown(socket.SHUT_WR)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward
