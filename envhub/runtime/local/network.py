"""The host side of an environment's own network: its front-door socket and namespace.

An environment's app listens on 127.0.0.1:$PORT inside its own network
namespace, so no host port leads to it. envhub reaches it through a UNIX
socket, ``envs/<id>/run/app.sock``, that envhub itself creates in a folder
only envhub can open and that no sandbox mounts; the supervisor relays each
connection to the app. A socket path the environment could write is never
connected to: before use, the folder and the socket are checked to be
envhub's own (no symlink, no group or other access).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import socket
from pathlib import Path

import psutil

from envhub.errors import SandboxUnavailable
from envhub.runtime.local.relays import private_socket_problem

SOCKET_NAME = "app.sock"
_SUN_PATH_MAX = 107  # sockaddr_un.sun_path holds 108 bytes with the terminating NUL


# Where the host's resolvers are listed: the usual file, then systemd-resolved's
# list of upstream servers (when the usual file names its loopback stub).
_RESOLV_FILES = ("/etc/resolv.conf", "/run/systemd/resolve/resolv.conf")


def find_slirp4netns() -> str | None:
    return shutil.which("slirp4netns")


def nameservers(files: tuple[str, ...] = _RESOLV_FILES) -> list[str]:
    """The host's IPv4 resolvers that an environment may use: none on the host's loopback.

    slirp4netns's own DNS forwarder (10.0.2.3) is switched off: it forwards
    *any* port to the host's first resolver, which on many machines sits on the
    host's loopback (127.0.0.53, a local dnsmasq on 127.0.0.1), and would be a
    way around ``--disable-host-loopback``. Environments ask the host's
    upstream resolvers directly instead, through slirp4netns like any traffic.
    """
    for name in files:
        found: list[str] = []
        with contextlib.suppress(OSError):
            for line in Path(name).read_text().splitlines():
                fields = line.split()
                if len(fields) < 2 or fields[0] != "nameserver":
                    continue
                with contextlib.suppress(ValueError):
                    address = ipaddress.ip_address(fields[1])
                    if address.version == 4 and not address.is_loopback and not address.is_unspecified:
                        found.append(str(address))
        if found:
            return found[:3]
    return []


def prepare_run_dir(run_dir: Path) -> None:
    """Create (or re-create) envhub's private folder for one environment."""
    if run_dir.is_symlink() or (run_dir.exists() and not run_dir.is_dir()):
        run_dir.unlink()
    run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(run_dir, 0o700)


PORT_SOCKETS = "port-*.sock"


def port_socket_name(port: int) -> str:
    """The socket of a forwarded port other than the app's (a devcontainer's ``forwardPorts``)."""
    return f"port-{port}.sock"


def listen(run_dir: Path, name: str = SOCKET_NAME) -> socket.socket:
    """A listening UNIX socket at ``run_dir/<name>`` (``app.sock``; replacing a stale one)."""
    path = run_dir / name
    if len(os.fsencode(path)) > _SUN_PATH_MAX:
        raise SandboxUnavailable(
            f"the path {path} is too long for a UNIX socket "
            f"({len(os.fsencode(path))} > {_SUN_PATH_MAX} bytes)",
            hint="Choose a shorter data folder (ENVHUB_DATA_DIR).",
            details={"path": str(path)},
        )
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        os.chmod(path, 0o600)
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


def private_socket(run_dir: Path, name: str = SOCKET_NAME) -> str | None:
    """The socket's path when it and its folder are envhub's own, else None."""
    path = str(run_dir / name)
    return None if private_socket_problem(path) else path


def open_namespaces(pid: int, create_time: float) -> list[tuple[str, int]]:
    """Descriptors of the network namespace (and, unprivileged, user namespace) of ``pid``.

    Opened first, then the process is checked to still be the one recorded, so
    a recycled pid can never hand a shell someone else's namespace. Returns
    ``(nsenter option, fd)`` pairs; the caller closes the descriptors.
    """
    kinds = ["net"] if os.geteuid() == 0 else ["user", "net"]
    opened: list[tuple[str, int]] = []
    try:
        for kind in kinds:
            opened.append((kind, os.open(f"/proc/{pid}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC)))
        # A fresh look (psutil caches a process's start time), after the opens.
        if abs(psutil.Process(pid).create_time() - create_time) > 0.05:
            raise psutil.NoSuchProcess(pid)
    except (OSError, psutil.Error):
        for _kind, fd in opened:
            os.close(fd)
        raise
    return opened
