"""Trying things from inside a local environment, as its code (or a person in its shell) would.

A probe is a small stdlib-only Python program (the sandbox has the system's
``python3``) that tries a plan of connections, HTTP requests, reads and
writes and prints what happened as JSON: ``"connected"``, ``"ok: <body>"``,
``"read: ..."``, ``"wrote"``, or ``"failed: <why>"``.
"""

from __future__ import annotations

import contextlib
import json
import socket
from pathlib import Path
from typing import Any

import psutil

from envhub.runtime.local import LocalRuntime

PROBE = r"""
import json, os, socket, sys, urllib.request
plan = json.loads(sys.argv[1])
out = {}
def attempt(name, action):
    try:
        out[name] = action()
    except Exception as exc:
        out[name] = f"failed: {type(exc).__name__}: {exc}"
def tcp(host, port):
    with socket.create_connection((host, port), timeout=4):
        return "connected"
def unix(path):
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(4)
        sock.connect(path)
        return "connected"
def http(url):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    return "ok: " + opener.open(url, timeout=10).read().decode(errors="replace")[:200]
def read(path):
    with open(path, "rb") as handle:
        return "read: " + repr(handle.read(40))
def listing(path):
    return "listed: " + ",".join(sorted(os.listdir(path))[:20])
def write(path):
    with open(path, "w") as handle:
        handle.write("written inside")
    return "wrote"
for name, (host, port) in plan.get("tcp", {}).items():
    attempt(name, lambda: tcp(host, port))
for name, path in plan.get("unix", {}).items():
    attempt(name, lambda: unix(path))
for name, url in plan.get("http", {}).items():
    attempt(name, lambda: http(url))
for name, path in plan.get("read", {}).items():
    attempt(name, lambda: read(path))
for name, path in plan.get("list", {}).items():
    attempt(name, lambda: listing(path))
for name, path in plan.get("write", {}).items():
    attempt(name, lambda: write(path))
print(json.dumps(out))
"""


def script_command(
    variable: str, script: str, plan: dict[str, Any], output: str, then: str
) -> tuple[str, dict[str, str]]:
    """An environment command (and its variables) that runs ``script`` with ``plan`` into
    ``<output>.json`` (errors in ``<output>.err``), then ``then``."""
    command = f'python3 -c "${variable}" "$PLAN" > {output}.json 2> {output}.err; {then}'
    return command, {variable: script, "PLAN": json.dumps(plan)}


def script_result(runtime: LocalRuntime, environment_id: int, output: str, what: str) -> Any:
    """What a :func:`script_command` printed, as JSON."""
    workspace = runtime.workspace_path(environment_id)
    text = (workspace / f"{output}.json").read_text()
    assert text, f"the {what} printed nothing: {(workspace / f'{output}.err').read_text()}"
    return json.loads(text)


def probe_command(
    plan: dict[str, Any], then: str = "exec python3 -m http.server $PORT"
) -> tuple[str, dict[str, str]]:
    """An environment command (and its variables) that runs the probe into probe.json, then serves."""
    return script_command("PROBE", PROBE, plan, "probe", then)


def probe_result(runtime: LocalRuntime, environment_id: int) -> dict[str, str]:
    result: dict[str, str] = script_result(runtime, environment_id, "probe", "probe")
    return result


def probe_in_shell(runtime: LocalRuntime, environment_id: int, plan: dict[str, Any]) -> dict[str, str]:
    """Run the probe through the terminal's exec (a shell beside the app), as a person would."""
    session = runtime.exec(environment_id, ["python3", "-c", PROBE, json.dumps(plan)], tty=False)
    try:
        output = b""
        while chunk := session.read(timeout=120):
            output += chunk
        assert session.wait(30) == 0, output.decode(errors="replace")
    finally:
        session.close()
    result: dict[str, str] = json.loads(output.decode().strip().splitlines()[-1])
    return result


def host_can_connect(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=3):
        return True
    return False


def host_listeners(pids: set[int]) -> list[str]:
    """Listening inet sockets on the host that belong to ``pids``."""
    return [
        f"{conn.laddr} (pid {conn.pid})"
        for conn in psutil.net_connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN and conn.pid in pids
    ]


def tree_pids(runtime: LocalRuntime, environment_id: int) -> set[int]:
    state = json.loads((runtime.workspace_path(environment_id).parent / "state.json").read_text())
    root = psutil.Process(int(state["pid"]))
    return {root.pid, *(p.pid for p in root.children(recursive=True))}


def outside_address() -> str:
    """This machine's IPv4 address on its default route: not loopback, still this machine."""
    interface = ""
    for line in Path("/proc/net/route").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == "00000000" and fields[7] == "00000000":
            interface = fields[0]
            break
    assert interface, "this machine has no default route (/proc/net/route): the outbound test needs one"
    for address in psutil.net_if_addrs().get(interface, []):
        if address.family == socket.AF_INET and not address.address.startswith("127."):
            return str(address.address)
    raise AssertionError(f"the default-route interface {interface} has no IPv4 address")
