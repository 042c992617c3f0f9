"""Stand-ins for the managed services envhub runs on this machine, and a client to try them from inside.

:class:`UnixEcho` is a service on a host UNIX socket (an asyncio echo server
on a thread of its own) that counts its connections, so a test can show a
relay did, or did not, connect. :data:`CLIENT` is a stdlib-only program for
inside an environment: it talks to 127.0.0.1:<port> as an app's database
client would and prints what happened as JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from envhub.runtime.local import LocalRuntime
from tests.support.inside import script_command, script_result


class UnixEcho:
    """Echoes every byte back on a UNIX socket; closes its side once the client has closed its own."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    async def _echo(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while data := await reader.read(1 << 18):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    def start(self) -> UnixEcho:
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(
            asyncio.start_unix_server(self._echo, path=str(self.path)), self._loop
        )
        self._server = started.result(10)
        os.chmod(self.path, 0o600)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


@contextlib.contextmanager
def unix_echo(path: Path) -> Iterator[UnixEcho]:
    server = UnixEcho(path).start()
    try:
        yield server
    finally:
        server.stop()


def private_folder() -> Path:
    """A 0700 folder with a short path (a UNIX socket path holds at most 107 bytes)."""
    return Path(tempfile.mkdtemp(prefix="envhub-svc-"))


# For inside an environment (system python3, standard library only). argv[1] is
# a JSON plan: {"echo": {name: port}, "big": port, "concurrent": port,
# "bind": {name: port}, "unix": {name: path}}.
CLIENT = r"""
import hashlib, json, socket, sys, threading
plan = json.loads(sys.argv[1])
out = {}
def payload(size, seed):
    block = hashlib.sha256(str(seed).encode()).digest()
    return (block * (size // len(block) + 1))[:size]
def roundtrip(port, data):
    # Send everything, half-close, read until the far end closes: the echo proves both directions
    # and that the EOF crossed the relay both ways.
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    got = bytearray()
    def send():
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
    sender = threading.Thread(target=send)
    sender.start()
    try:
        while chunk := sock.recv(1 << 16):
            got += chunk
    finally:
        sender.join()
        sock.close()
    return bytes(got)
def attempt(name, action):
    try:
        out[name] = action()
    except Exception as exc:
        out[name] = f"failed: {type(exc).__name__}: {exc}"
def echo(port):
    got = roundtrip(port, b"ping")
    return "echo: " + got.decode() if got else "closed"
for name, port in plan.get("echo", {}).items():
    attempt(name, lambda: echo(port))
if "big" in plan:
    data = payload(16 << 20, "big")
    attempt("big", lambda: "same" if roundtrip(plan["big"], data) == data else "different")
if "concurrent" in plan:
    results = {}
    def one(i):
        data = payload((1 << 20) + i, i)
        try:
            results[i] = roundtrip(plan["concurrent"], data) == data
        except OSError as exc:
            results[i] = repr(exc)
    workers = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    out["concurrent"] = sorted(str(v) for v in results.values())
def bind(port):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        return "bound"
for name, port in plan.get("bind", {}).items():
    attempt(name, lambda: bind(port))
def unix(path):
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(4)
        sock.connect(path)
        return "connected"
for name, path in plan.get("unix", {}).items():
    attempt(name, lambda: unix(path))
print(json.dumps(out))
"""


def client_command(
    plan: dict[str, Any], then: str = "exec python3 -m http.server $PORT"
) -> tuple[str, dict[str, str]]:
    """An environment command (and its variables) that runs :data:`CLIENT` into relay.json, then serves."""
    return script_command("CLIENT", CLIENT, plan, "relay", then)


def client_result(runtime: LocalRuntime, environment_id: int) -> dict[str, Any]:
    result: dict[str, Any] = script_result(runtime, environment_id, "relay", "client")
    return result


def run_in_shell(runtime: LocalRuntime, environment_id: int, argv: list[str]) -> str:
    """What ``argv`` prints, run through the terminal's exec (a shell beside the app), as a person would."""
    session = runtime.exec(environment_id, argv, tty=False)
    try:
        output = b""
        while chunk := session.read(timeout=120):
            output += chunk
        assert session.wait(30) == 0, output.decode(errors="replace")
    finally:
        session.close()
    return output.decode(errors="replace")


def client_in_shell(runtime: LocalRuntime, environment_id: int, plan: dict[str, Any]) -> dict[str, Any]:
    output = run_in_shell(runtime, environment_id, ["python3", "-c", CLIENT, json.dumps(plan)])
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return result
