"""Starting an environment's process tree: the supervisor, its network, the sandboxed app.

The tree is ``supervisor -> bwrap -> the project's command`` (plus slirp4netns
under the supervisor). envhub hands the supervisor its instructions in a
memfd and waits for one status line saying what network the environment got.
Everything envhub starts here runs with :data:`LAUNCHER_ENV`; the project's
variables travel in descriptors to the sandbox (see ``sandbox.py``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import select
import shutil
import time
from pathlib import Path
from typing import Any

import psutil

from envhub.domain.specs import ServiceSocket
from envhub.errors import ProcessExited, RuntimeFailure, SandboxUnavailable
from envhub.private_files import open_private
from envhub.runtime.local import cgroups, network, processes
from envhub.runtime.local.sandbox import (
    LAUNCHER_ENV,
    NO_EXTRAS,
    SUPERVISOR,
    Extras,
    Launch,
    Sandbox,
    data_fd,
    python_command,
)

STATUS_TIMEOUT = 30.0


def times_path(log_path: Path) -> Path:
    """Where the supervisor notes when each second's output began in ``log_path`` (supervisor.py)."""
    return log_path.with_suffix(".times")


def start_supervised(
    *,
    sandbox: Sandbox,
    argv: list[str],
    env: dict[str, str],
    workspace: Path,
    run_dir: Path,
    log_path: Path,
    port: int,
    generation: int,
    services: tuple[ServiceSocket, ...] = (),
    forwarded: tuple[int, ...] = (),
    extras: Extras = NO_EXTRAS,
    own_url_port: int | None = None,
    git_credentials: dict[str, Any] | None = None,
    cgroup: cgroups.Placement | str | None = None,
    exit_path: Path | None = None,
) -> processes.ProcessState:
    """Start the supervisor; it relays ``services`` into the environment (see ``relays.py``).

    In a network of the environment's own, each of the ``forwarded`` ports (a
    devcontainer's, besides the app's ``port``) gets a socket of its own in
    ``run_dir`` too, relayed to that port inside; and 127.0.0.1:``own_url_port``
    inside, the port of the environment's own public URL, leads to the app
    (``domain/browser.own_url_inside``). ``extras`` go to the sandbox.

    ``cgroup``: the cgroups the supervisor moves into (``cgroups.py``), or why
    there are none. ``exit_path``: where it says how the app ended (``exits.py``).
    """
    network.prepare_run_dir(run_dir)
    own = sandbox.own_network
    for stale in run_dir.glob(network.PORT_SOCKETS):  # a previous start's: its ports may have changed
        stale.unlink(missing_ok=True)
    listener = network.listen(run_dir) if own else None
    extra = [(p, network.listen(run_dir, network.port_socket_name(p))) for p in forwarded] if own else []
    try:
        launch = sandbox.command(argv, workspace=workspace, env=env, network="inherit", extras=extras)
    except BaseException:
        for sock in [*([listener] if listener is not None else []), *(s for _p, s in extra)]:
            sock.close()
        raise
    status_r, status_w = os.pipe()
    times = open_private(times_path(log_path), "ab", buffering=0)
    ended = open_private(exit_path, "wb", buffering=0) if exit_path is not None else None
    placement = cgroup if isinstance(cgroup, cgroups.Placement) else None
    config: dict[str, Any] = {
        "times_fd": times.fileno(),
        "network": "own" if own else "host",
        "slirp4netns": network.find_slirp4netns() if own else None,
        "argv": launch.argv,
        "pass_fds": launch.fds,
        "listen_fd": listener.fileno() if listener else None,
        "port": port,
        "forwarded": [{"port": p, "listen_fd": sock.fileno()} for p, sock in extra],
        "own_url": (
            {"port": own_url_port, "target": port} if own and own_url_port not in (None, port) else None
        ),
        "status_fd": status_w,
        "services": [
            {"name": s.name, "port": s.port, "socket": s.socket, "owner": s.owner} for s in services
        ],
        "git_credentials": git_credentials,  # git_access.py: the relay's instructions (a key)
        "cgroups": list(placement.directories) if placement is not None else [],
        "exit_fd": ended.fileno() if ended is not None else None,
    }
    config_fd = data_fd(json.dumps(config).encode(), "envhub-supervisor")
    try:
        proc = processes.spawn(
            [*python_command(), str(SUPERVISOR), "run", str(config_fd)],
            cwd=workspace,
            env=LAUNCHER_ENV,
            log_path=log_path,
            pass_fds=(
                config_fd,
                status_w,
                times.fileno(),
                *([ended.fileno()] if ended is not None else []),
                *launch.fds,
                *([listener.fileno()] if listener else []),
                *(sock.fileno() for _p, sock in extra),
            ),
        )
    except BaseException:
        os.close(status_r)
        raise
    finally:
        launch.close()
        times.close()
        if ended is not None:
            ended.close()
        os.close(config_fd)
        os.close(status_w)
        if listener is not None:
            listener.close()
        for _p, sock in extra:
            sock.close()
    try:
        report = _read_report(status_r)
    except RuntimeFailure:
        processes.kill_tree(proc, grace=1.0)
        raise
    finally:
        os.close(status_r)
    if report is None or "error" in report:
        processes.kill_tree(proc, grace=1.0)
        if placement is not None:
            cgroups.remove(placement)
        if report is None:
            tail = processes.tail_lines(log_path, 20)
            raise ProcessExited(
                "the environment's supervisor stopped before it started the command",
                details={"log_tail": "\n".join(tail)},
            )
        raise SandboxUnavailable(str(report["error"]), details={"error": str(report["error"])})
    cpu, memory, note = _cgroup_fields(cgroup, report)
    return processes.ProcessState(
        pid=proc.pid,
        create_time=proc.create_time(),
        port=port,
        generation=generation,
        sandbox=sandbox.kind,
        started_at=time.time(),
        network=str(report.get("network", "host")),
        network_note=str(report.get("reason", "")),
        services_digest=services_digest(services),
        cgroup_cpu=cpu,
        cgroup_memory=memory,
        cgroup_note=note,
    )


def _cgroup_fields(cgroup: cgroups.Placement | str | None, report: dict[str, Any]) -> tuple[str, str, str]:
    """The tree's CPU and memory cgroups, or why it runs in none (the state's record)."""
    if isinstance(cgroup, cgroups.Placement) and "cgroup_error" not in report:
        return cgroup.cpu, cgroup.memory, ""
    if isinstance(cgroup, cgroups.Placement):
        cgroups.remove(cgroup)
        return "", "", str(report["cgroup_error"])
    return "", "", cgroup or ""


def services_digest(services: tuple[ServiceSocket, ...]) -> str:
    """What identifies a set of relayed services (empty for none, as states from before them say)."""
    if not services:
        return ""
    listed = sorted([s.name, s.port, s.socket, *([s.owner] if s.owner is not None else [])] for s in services)
    return hashlib.sha256(json.dumps(listed).encode()).hexdigest()[:32]


def _read_report(fd: int) -> dict[str, Any] | None:
    """The supervisor's status line; None when it ended without one."""
    deadline = time.monotonic() + STATUS_TIMEOUT
    data = b""
    while b"\n" not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RuntimeFailure(f"the environment's supervisor did not report within {STATUS_TIMEOUT:.0f}s")
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            return None
        data += chunk
    report = json.loads(data.split(b"\n", 1)[0])
    return report if isinstance(report, dict) else None


def shell_launch(
    sandbox: Sandbox,
    state: processes.ProcessState | None,
    argv: list[str],
    *,
    workspace: Path,
    env: dict[str, str],
    terminal: bool,
    extras: Extras = NO_EXTRAS,
) -> Launch:
    """The command line of a shell beside a running app, in the app's network namespace.

    The namespace is entered with nsenter from a descriptor opened before the
    process is checked to be the recorded one, so a recycled pid can never
    hand the shell another namespace. An environment that is not running gives
    a shell with loopback only.
    """
    namespaces: list[tuple[str, int]] = []
    joinable = state is not None and state.network != "host" and processes.find_process(state) is not None
    if sandbox.own_network and state is not None and joinable:
        with contextlib.suppress(OSError, psutil.Error):
            namespaces = network.open_namespaces(state.pid, state.create_time)
    try:
        launch = sandbox.command(
            argv,
            workspace=workspace,
            env=env,
            network="inherit" if namespaces else "none",
            terminal=terminal,
            extras=extras,
        )
    except BaseException:
        for _kind, fd in namespaces:
            os.close(fd)
        raise
    if namespaces:
        nsenter = shutil.which("nsenter", path=LAUNCHER_ENV["PATH"]) or "nsenter"
        options = [f"--{kind}=/proc/self/fd/{fd}" for kind, fd in namespaces]
        if os.geteuid() != 0:  # already root in that user namespace (the supervisor mapped us)
            options.append("--preserve-credentials")
        launch.argv = [nsenter, *options, "--", *launch.argv]
        launch.fds += [fd for _kind, fd in namespaces]
    return launch


def condition(state: processes.ProcessState) -> tuple[str, str] | None:
    """What people must know about a running environment's isolation: (code, message)."""
    if state.sandbox in ("unshare", "none"):
        return "weak_sandbox", f"runs with {describe(state)}, as the operator chose for trusted code"
    if state.network == "none":
        return "no_network", f"runs without a network: {state.network_note or 'no user-mode network stack'}"
    return None


def describe(state: processes.ProcessState) -> str:
    """The isolation an environment runs with, in words (step details, the workloads panel)."""
    sandbox = {"bwrap": "bubblewrap sandbox", "unshare": "unshare sandbox", "none": "no sandbox"}.get(
        state.sandbox, f"{state.sandbox} sandbox"
    )
    if state.network == "slirp4netns":
        return f"{sandbox}, own network (outbound only, through slirp4netns)"
    if state.network == "none":
        return f"{sandbox}, no network ({state.network_note or 'no user-mode network stack'})"
    return f"{sandbox}, the host's network"
