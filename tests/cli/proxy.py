"""Between the envhub command and envhub: a TCP relay that can cut every connection, and a lossy HTTP proxy.

What a dropped network looks like to both ends: the sockets simply die. The
relay keeps listening, so a client that reconnects gets through again.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from tests.support.net import free_port


class Relay:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True, name=f"relay-{self.port}").start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._open += [client, upstream]
                self.accepted += 1
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Kill every connection now (RST, as a dead network path would end up)."""
        with self._lock:
            sockets, self._open = self._open, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def close(self) -> None:
        self._listener.close()
        self.cut()


@contextlib.contextmanager
def relay(target_port: int) -> Iterator[Relay]:
    started = Relay(target_port)
    try:
        yield started
    finally:
        started.close()


class AnswerLost:
    """An HTTP proxy in front of envhub that delivers the first create but loses its answer.

    What a dropped connection after the server committed looks like to the
    client: the request arrived and was carried out, the answer never came.
    Every other request passes through unchanged. ``keys`` records the
    Idempotency-Key of each create that reached envhub.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.keys: list[str] = []
        self.lost = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")
                }
                creating = self.command == "POST" and self.path.endswith("/environments")
                if creating:
                    proxy.keys.append(self.headers.get("Idempotency-Key", ""))
                answer = httpx.request(
                    self.command, proxy.upstream + self.path, headers=headers, content=body, timeout=60
                )
                if creating and not proxy.lost:
                    proxy.lost += 1
                    self.close_connection = True  # carried out upstream; the client hears nothing
                    return
                self.send_response(answer.status_code)
                for name, value in answer.headers.items():
                    if name.lower() not in (
                        "content-length",
                        "transfer-encoding",
                        "connection",
                        "content-encoding",
                    ):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = do_DELETE = _forward

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True, name="answer-lost").start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def answer_lost(upstream: str) -> Iterator[AnswerLost]:
    started = AnswerLost(upstream)
    try:
        yield started
    finally:
        started.close()
