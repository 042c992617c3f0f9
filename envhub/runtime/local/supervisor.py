"""The first process of a local environment: its network, its app, its front door.

envhub starts this file as a script (``python -I -S supervisor.py run FD``), with
a fixed minimal environment, so it imports nothing but the standard library
and ``relays.py`` beside it (standard library only too). It

0. moves itself into the environment's cgroups when envhub made them
   (``cgroups``), before it starts anything, so all it starts is counted there;
1. gives the environment a network namespace of its own (``unshare``), with
   loopback up and, when slirp4netns is available, outbound traffic through
   it (``--disable-host-loopback``: nothing on the host's 127.0.0.1 is
   reachable); without it the environment has loopback only;
2. reports what it got on the status descriptor (one JSON line);
3. starts the app (bubblewrap around the project's command), which shares
   that namespace and listens on 127.0.0.1:$PORT there;
4. accepts connections on a UNIX socket that envhub created in a folder only
   envhub can reach, and relays each to 127.0.0.1:$PORT inside. The gateway
   and the health check connect to that socket; the app has no host port;
5. the other way round, for each managed service envhub runs on this machine
   (``services``: name, port, host socket path), listens on 127.0.0.1:<port>
   inside, before the app starts (so the app cannot take the port first), and
   relays each connection to the service's UNIX socket on the host. This
   process is in the host's mount namespace, the sandbox is not: the paths
   envhub passed are the only ones it ever connects to, and each connection
   first checks the socket is envhub's own (see ``relays.py``);
6. when asked (``own_url``), listens on 127.0.0.1:<port of the environment's
   public URL> inside, also before the app starts, and relays each connection
   to the app's port: the environment reaches its own URL (a browser testing
   it), and nothing else of the host's, without a route out of its namespace.
7. when the project's repository is on GitHub (``git_credentials``), forks,
   before making the namespace, the relay that git's credential helper talks
   to (``git_relay.py``), and hands it a listener on 127.0.0.1:<port> inside.

The app writes its output to the log itself; once a second this process looks
at the log's size and notes in the times file (``times_fd``) where the output
since the last look begins.

It exits with the app's exit status, which it first writes, with the time and the
count of the memory cgroup's OOM kills, to the exit file (``exit_fd``): the
next start reads it as the restart's reason (``exits.py``). bubblewrap's ``--die-with-parent`` and
slirp4netns's ``--exit-fd`` make both end when it does.

``exec FD -- argv`` is a second, tiny mode: read an environment (JSON) from FD
and exec ``argv`` with exactly that environment, so a launcher such as
``unshare`` runs with envhub's minimal environment and only the program it
starts gets the project's variables, without them ever appearing in a
command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import json
import os
import resource
import select
import signal
import socket
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING or __package__:
    from envhub.runtime.local import git_relay, relays
else:  # run as a script, isolated (-I): its helper modules sit beside it
    sys.path.append(os.path.dirname(os.path.abspath(__file__)))
    import git_relay
    import relays

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_SIOCADDRT = 0x890B
_IFF_UP = 0x1
_RTF_UP, _RTF_HOST, _RTF_REJECT = 0x1, 0x4, 0x200
_IFREQ = "16sh22x"
# slirp4netns's aliases for the host: 10.0.2.2 is the host's loopback (refused
# by --disable-host-loopback), 10.0.2.3 forwards any port to the host's first
# resolver, which may be on the host's loopback (127.0.0.53, a local dnsmasq),
# even with --disable-dns. Both become unreachable inside the namespace.
SLIRP_HOST_ALIASES = ("10.0.2.2", "10.0.2.3")
SLIRP_READY_TIMEOUT = 10.0
# Descriptors for the front door's and the services' relays (two each per connection).
_WANTED_FILES = 8192
_STAMP_EVERY = 1.0  # seconds: the times file notes where each second's output begins
_MINIMAL_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


def _read_json(fd: int) -> Any:
    with os.fdopen(fd, "rb") as handle:
        return json.loads(handle.read())


def _unshare(flags: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(flags) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"unshare: {os.strerror(errno)}")


def _own_network_namespace() -> None:
    """Move this process into a new network namespace (and, unprivileged, a user namespace)."""
    uid, gid = os.geteuid(), os.getegid()
    if uid == 0:
        _unshare(CLONE_NEWNET)
        return
    _unshare(CLONE_NEWUSER | CLONE_NEWNET)
    for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1")):
        with open(f"/proc/self/{name}", "w") as handle:
            handle.write(text)


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack(_IFREQ, b"lo", 0)
        flags = struct.unpack(_IFREQ, fcntl.ioctl(sock, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack(_IFREQ, b"lo", flags | _IFF_UP))


class _RouteEntry(ctypes.Structure):
    """``struct rtentry`` (linux/route.h), for the SIOCADDRT ioctl."""

    _fields_ = [
        ("rt_pad1", ctypes.c_ulong),
        ("rt_dst", ctypes.c_ubyte * 16),
        ("rt_gateway", ctypes.c_ubyte * 16),
        ("rt_genmask", ctypes.c_ubyte * 16),
        ("rt_flags", ctypes.c_ushort),
        ("rt_pad2", ctypes.c_short),
        ("rt_pad3", ctypes.c_ulong),
        ("rt_pad4", ctypes.c_void_p),
        ("rt_metric", ctypes.c_short),
        ("rt_dev", ctypes.c_char_p),
        ("rt_mtu", ctypes.c_ulong),
        ("rt_window", ctypes.c_ulong),
        ("rt_irtt", ctypes.c_ushort),
    ]


def _sockaddr_in(address: str) -> bytes:
    return struct.pack("=HH4s8x", socket.AF_INET, 0, socket.inet_aton(address))


def _unreachable(address: str) -> None:
    """An 'unreachable' host route: connecting to ``address`` fails at once, inside."""
    entry = _RouteEntry()
    ctypes.memmove(entry.rt_dst, _sockaddr_in(address), 16)
    ctypes.memmove(entry.rt_genmask, _sockaddr_in("255.255.255.255"), 16)
    entry.rt_flags = _RTF_UP | _RTF_HOST | _RTF_REJECT
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        fcntl.ioctl(sock, _SIOCADDRT, bytes(memoryview(entry).cast("B")))


class _Slirp:
    """slirp4netns, forked while this process is still in the host's network namespace."""

    def __init__(self, binary: str) -> None:
        go_r, self._go_w = os.pipe()
        self._ready_r, ready_w = os.pipe()
        exit_r, self._exit_w = os.pipe()  # kept open until this process ends
        parent = os.getpid()
        self.pid = os.fork()
        if self.pid == 0:  # the child: wait until the namespace exists, then become slirp4netns
            try:
                os.close(self._go_w)
                os.close(self._ready_r)
                os.close(self._exit_w)
                if os.read(go_r, 1) != b"1":
                    os._exit(1)
                os.set_inheritable(ready_w, True)
                os.set_inheritable(exit_r, True)
                argv = [binary, "--configure", "--mtu=65520", "--disable-host-loopback"]
                argv += ["--disable-dns", "--enable-sandbox", "--enable-seccomp"]
                argv += [f"--ready-fd={ready_w}", f"--exit-fd={exit_r}"]
                if os.geteuid() != 0:  # the namespace belongs to the user namespace made for it
                    argv.append(f"--userns-path=/proc/{parent}/ns/user")
                argv += [str(parent), "tap0"]
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 1)  # its start-up chatter; errors still go to stderr (the log)
                os.execve(binary, argv, _MINIMAL_ENV)  # noqa: S606 - a fixed argv, no shell
            finally:
                os._exit(127)
        os.close(go_r)
        os.close(ready_w)
        os.close(exit_r)
        fcntl.fcntl(self._exit_w, fcntl.F_SETFD, fcntl.FD_CLOEXEC)

    def start(self) -> str | None:
        """Let it attach; None when the network is up, else why not."""
        os.write(self._go_w, b"1")
        os.close(self._go_w)
        deadline = time.monotonic() + SLIRP_READY_TIMEOUT
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._stop()
                return f"slirp4netns did not come up within {SLIRP_READY_TIMEOUT:.0f}s"
            ready, _, _ = select.select([self._ready_r], [], [], remaining)
            if ready:
                answer = os.read(self._ready_r, 1)
                os.close(self._ready_r)
                if answer == b"1":
                    return None
                status = self._stop()
                return f"slirp4netns failed to start (exit status {status}; see the log)"

    def _stop(self) -> int | None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            _pid, status = os.waitpid(self.pid, 0)
            return os.waitstatus_to_exitcode(status)
        return None


def _set_up_network(config: dict[str, Any]) -> dict[str, str]:
    if config["network"] != "own":
        return {"network": "host"}
    slirp = _Slirp(config["slirp4netns"]) if config.get("slirp4netns") else None
    _own_network_namespace()
    _loopback_up()
    if slirp is None:
        return {"network": "none", "reason": "slirp4netns is not installed"}
    problem = slirp.start()
    if problem:
        return {"network": "none", "reason": problem}
    for address in SLIRP_HOST_ALIASES:
        _unreachable(address)
    return {"network": "slirp4netns"}


async def _forward(
    client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter, port: int, slots: asyncio.Semaphore
) -> None:
    if slots.locked():  # a flood of connections must not exhaust this process's descriptors
        client_w.close()
        return
    async with slots:
        try:
            app_r, app_w = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            client_w.close()
            return
        try:
            await asyncio.gather(relays.relay(client_r, app_w), relays.relay(app_r, client_w))
        finally:
            app_w.close()
            client_w.close()


def _forwarder(
    port: int, slots: asyncio.Semaphore
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    """Relays each connection of one front socket to ``port`` inside the environment."""

    async def forward(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        await _forward(client_r, client_w, port, slots)

    return forward


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _note_output(times_fd: int, seen: int) -> int:
    """Note the output written since the last look (its bytes, and that they were there by now);
    returns the log's size now."""
    size = os.fstat(1).st_size
    if size > seen:
        _write_all(times_fd, f"{seen} {time.time():.3f} {size}\n".encode())
    return max(size, seen)


async def _stamp_output(times_fd: int) -> None:
    """Once a second, note in the times file (``<start> <unix time> <end>`` lines) the output
    written since the last look, so a reader can tell when each line was printed, within a
    second. The app writes to the log (this process's stdout) itself: its output never passes
    through here, so a flood costs this process nothing but a look at the file's size."""
    seen = os.fstat(1).st_size
    try:
        while True:
            await asyncio.sleep(_STAMP_EVERY)
            seen = _note_output(times_fd, seen)
    finally:
        _note_output(times_fd, seen)


async def _serve(
    config: dict[str, Any], listeners: list[socket.socket], own_url: socket.socket | None = None
) -> int:
    # The services' ports are served before the app starts: it cannot take one first.
    services = await relays.ServiceRelays(config["services"]).serve(listeners) if listeners else []
    slots = asyncio.Semaphore(relays.MAX_CONNECTIONS)  # shared: one budget of descriptors
    servers: list[asyncio.Server] = []
    if own_url is not None:
        target = int(config["own_url"]["target"])
        servers.append(await asyncio.start_server(_forwarder(target, slots), sock=own_url))
    times_fd = config.get("times_fd")
    app = await asyncio.create_subprocess_exec(
        *config["argv"], stdin=asyncio.subprocess.DEVNULL, pass_fds=tuple(config.get("pass_fds", ()))
    )
    for fd in config.get("pass_fds", ()):
        os.close(fd)
    stamping = asyncio.create_task(_stamp_output(times_fd)) if times_fd is not None else None
    fronts = [{"port": config["port"], "listen_fd": config.get("listen_fd")}, *config.get("forwarded", [])]
    for front in fronts:
        if front["listen_fd"] is not None:
            listener = socket.socket(fileno=front["listen_fd"])
            servers.append(
                await asyncio.start_unix_server(_forwarder(int(front["port"]), slots), sock=listener)
            )
    try:
        return await app.wait()
    finally:
        for each in [*services, *servers]:
            each.close()
        if stamping is not None:  # its last look notes what the app printed last
            stamping.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await stamping


def _more_files() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = _WANTED_FILES if hard == resource.RLIM_INFINITY else min(_WANTED_FILES, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def _bind_own_url(config: dict[str, Any]) -> socket.socket | None:
    """The listener of the environment's own public URL inside; None when not asked or the port is taken."""
    wanted = config.get("own_url")
    if not wanted:
        return None
    try:
        return relays.bind_services([{"name": "public URL", "port": int(wanted["port"])}])[0]
    except OSError as exc:  # the app still starts; only its own URL stays unreachable inside
        why = exc.strerror or str(exc)
        print(f"envhub: the public URL is not served inside: {why}", file=sys.stderr, flush=True)
        return None


def _join_cgroups(directories: list[str]) -> str | None:
    """Move this process into the environment's cgroups (``cgroups.py``), before it starts
    anything, so every process below it is counted there; None, else why not."""
    for directory in directories:
        try:
            with open(os.path.join(directory, "cgroup.procs"), "w") as procs:
                procs.write(str(os.getpid()))
        except OSError as exc:
            return f"could not join the cgroup {directory}: {exc.strerror or exc}"
    return None


def _oom_kills(directories: list[str]) -> int | None:
    """How many processes the kernel's OOM killer ended in the environment's memory cgroup."""
    for directory in directories:
        for name in ("memory.events", "memory.oom_control"):
            with contextlib.suppress(OSError, ValueError), open(os.path.join(directory, name)) as handle:
                for line in handle:
                    if line.startswith("oom_kill "):
                        return int(line.split()[1])
    return None


def _record_exit(config: dict[str, Any], code: int) -> None:
    """Say how the app ended (``exits.py`` reads it at the next start: a restart's last state)."""
    exit_fd = config.get("exit_fd")
    if exit_fd is None:
        return
    record = {
        "pid": os.getpid(),
        "status": code,
        "finished_at": time.time(),
        "oom_kills": _oom_kills(config.get("cgroups") or []),
    }
    with contextlib.suppress(OSError):
        _write_all(int(exit_fd), (json.dumps(record) + "\n").encode())


def run(config_fd: int) -> int:
    config = _read_json(config_fd)
    status_fd = int(config["status_fd"])
    cgroup_problem = _join_cgroups(config.get("cgroups") or [])
    _more_files()
    listeners: list[socket.socket] = []
    git = config.get("git_credentials")
    # Forked while this process is still in the host's network, where envhub is reachable.
    git_channel = git_relay.start(git) if git and config["network"] == "own" else None
    try:
        report = _set_up_network(config)
    except OSError as exc:
        report = {"error": f"could not create the environment's network namespace: {exc}"}
    if git_channel is not None and "error" not in report:
        try:  # bound before the app starts, so the app cannot take the port first
            git_relay.hand_over(git_channel, int(git["port"]))
        except OSError as exc:
            print(f"envhub: no git credentials in this environment: {exc}", file=sys.stderr, flush=True)
    services = config.get("services", [])
    if "error" not in report and services and report["network"] != "host":
        try:
            listeners = relays.bind_services(services)
        except OSError as exc:
            report = {"error": exc.strerror or str(exc)}
    own_url = _bind_own_url(config) if "error" not in report and report["network"] != "host" else None
    if cgroup_problem is not None:
        report["cgroup_error"] = cgroup_problem
    with os.fdopen(status_fd, "w") as status:
        status.write(json.dumps(report) + "\n")
    if "error" in report:
        return 1
    if report["network"] == "none":
        print(f"envhub: this environment has no network: {report['reason']}", file=sys.stderr, flush=True)
    if services and not listeners:
        names = ", ".join(str(service["name"]) for service in services)
        print(
            f"envhub: services not relayed (the host's network is shared): {names}",
            file=sys.stderr,
            flush=True,
        )
    code = asyncio.run(_serve(config, listeners, own_url))
    code = code if code >= 0 else 128 - code
    _record_exit(config, code)
    return code


def exec_with_env(env_fd: int, argv: list[str]) -> None:
    env = _read_json(env_fd)
    os.execvpe(argv[0], argv, env)  # noqa: S606 - the argv envhub built, no shell


def main(args: list[str]) -> int:
    if len(args) >= 2 and args[0] == "run":
        return run(int(args[1]))
    if len(args) >= 4 and args[0] == "exec" and args[2] == "--":
        exec_with_env(int(args[1]), args[3:])
    print("usage: supervisor.py run CONFIG_FD | exec ENV_FD -- ARGV...", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
