"""Starting, finding and stopping an environment's process tree.

The process must outlive the job (and the worker) that starts it, so it runs in its own
session, and its identity (pid plus start time, so a recycled pid is never
mistaken for it) is kept in ``state.json`` next to the workspace.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from envhub.private_files import open_private, write_private
from envhub.runtime.base import Endpoint


@dataclass(slots=True)
class ProcessState:
    pid: int
    create_time: float
    port: int
    generation: int
    sandbox: str
    started_at: float
    # The environment's network: slirp4netns (own, outbound only), none (own,
    # loopback only; ``network_note`` says why) or host (unshare/none sandboxes).
    network: str = "host"
    network_note: str = ""
    # What envhub told the app about itself (ENVHUB_*), for shells opened beside it.
    variables: dict[str, str] = field(default_factory=dict)
    # Which managed services the supervisor relays (launching.services_digest):
    # a change restarts the tree, since its listeners are made at start.
    services_digest: str = ""
    # For inspection: the command, the project's variables (secret-looking values already redacted),
    # and the names (never the values) of the secrets it was given.
    command: str = ""
    env: dict[str, str] = field(default_factory=dict)
    secret_names: list[str] = field(default_factory=list)
    # Whether the sandbox was lent a browser (``browser.py``), and the host of the
    # environment's own public URL that it serves inside: shells beside it get both.
    browser: bool = False
    own_host: str = ""
    # The tree's own cgroups (``cgroups.py``; "" when it runs in none, ``cgroup_note`` saying why).
    cgroup_cpu: str = ""
    cgroup_memory: str = ""
    cgroup_note: str = ""
    # Starts after the tree before ended by itself, and how the last one ended (``exits.py``).
    restarts: int = 0
    last_exit: dict[str, Any] = field(default_factory=dict)


def read_state(path: Path) -> ProcessState | None:
    try:
        return ProcessState(**json.loads(path.read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        return None


def write_state(path: Path, state: ProcessState) -> None:
    tmp = path.with_suffix(".tmp")
    write_private(tmp, json.dumps(asdict(state)))
    tmp.replace(path)


def find_process(state: ProcessState | None) -> psutil.Process | None:
    """The live root process recorded in ``state``, or None."""
    if state is None:
        return None
    try:
        proc = psutil.Process(state.pid)
        if abs(proc.create_time() - state.create_time) > 0.05:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except psutil.Error:
        return None


def spawn(
    argv: list[str], *, cwd: Path, env: dict[str, str], log_path: Path, pass_fds: tuple[int, ...] = ()
) -> psutil.Process:
    with open_private(log_path, "ab") as log:
        popen = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            pass_fds=pass_fds,
        )
    return psutil.Process(popen.pid)


def kill_tree(proc: psutil.Process, *, grace: float = 3.0) -> None:
    """Stop ``proc`` and every descendant: TERM, then KILL after ``grace``."""
    try:
        family = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        family = [proc]
    # Freeze first so nothing forks new children while we signal.
    for member in family:
        _signal(member, signal.SIGSTOP)
    for member in family:
        _signal(member, signal.SIGTERM)
        _signal(member, signal.SIGCONT)
    _gone, alive = psutil.wait_procs(family, timeout=grace)
    for member in alive:
        _signal(member, signal.SIGKILL)
    psutil.wait_procs(alive, timeout=grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _signal(proc: psutil.Process, sig: signal.Signals) -> None:
    with contextlib.suppress(psutil.Error):
        proc.send_signal(sig)


def free_port(preferred: int | None = None, *, avoid: Collection[int] = ()) -> int:
    """A TCP port free on loopback and not in ``avoid``, ``preferred`` if it still is."""
    first = [preferred] if preferred and preferred not in avoid else []
    for candidate in first + [0] * 8:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            port = int(sock.getsockname()[1])
            if port not in avoid:
                return port
    raise OSError("no free port")


def _connect(endpoint: Endpoint, timeout: float) -> socket.socket:
    if endpoint.unix_socket is None:
        return socket.create_connection((endpoint.host, endpoint.port), timeout=timeout)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(endpoint.unix_socket)
    except BaseException:
        sock.close()
        raise
    return sock


def probe_http(endpoint: Endpoint, path: str, *, timeout: float = 2.0) -> int | None:
    """HTTP status of ``GET path`` at ``endpoint``, or None when nothing answers."""
    try:
        with _connect(endpoint, timeout) as sock:
            sock.settimeout(timeout)
            request = f"GET {path} HTTP/1.0\r\nHost: localhost\r\nUser-Agent: envhub-health\r\n\r\n"
            sock.sendall(request.encode())
            head = sock.recv(64).decode("latin-1")
            # Drain the rest (bounded) so the app sees an orderly close rather
            # than a reset, which many servers log as an error.
            received = len(head)
            while received < 1 << 20 and (chunk := sock.recv(65536)):
                received += len(chunk)
    except OSError:
        return None
    parts = head.split(" ", 2)
    if len(parts) >= 2 and parts[0].startswith("HTTP/") and parts[1].isdigit():
        return int(parts[1])
    return None


def tail_lines(path: Path, count: int) -> list[str]:
    """The last ``count`` lines (0: those of the last 64 KiB), read from at most 16 MiB."""
    window = min(max(64 * 1024, count * 256), 16 << 20)
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - window))
            data = handle.read()
    except FileNotFoundError:
        return []
    lines = data.decode("utf-8", "replace").splitlines()
    return lines[-count:] if count else lines


def wait_until(deadline: float, interval: float = 0.2) -> bool:
    """Sleep one interval; False once the deadline has passed."""
    if time.monotonic() >= deadline:
        return False
    time.sleep(interval)
    return True


def tree_usage(proc: psutil.Process) -> tuple[float, int]:
    """(CPU seconds, resident bytes) of ``proc`` and every live descendant.

    CPU seconds count user and system time, and what children already reaped
    used; a rate is the difference of two readings over the time between them.
    """
    try:
        family = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        family = [proc]
    cpu, memory = 0.0, 0
    for member in family:
        with contextlib.suppress(psutil.Error), member.oneshot():
            times = member.cpu_times()
            cpu += times.user + times.system + times.children_user + times.children_system
            memory += member.memory_info().rss
    return cpu, memory
