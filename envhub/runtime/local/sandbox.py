"""How a local environment's processes are isolated, and the command lines that do it.

Environments run code nobody reviewed, so bubblewrap is the only sandbox
envhub picks by itself. Its sandbox has

* its own user (with every capability dropped and no further user
  namespaces), mount, PID, IPC, UTS and cgroup namespaces; the network
  namespace is the environment's own, made by the supervisor
  (``supervisor.py``);
* read-only system folders (``/usr``, ``/bin``, ``/sbin``, ``/lib*``), a
  private ``/tmp``, and the workspace as its only writable folder;
* envhub's git credential helper, read-only (``/etc/envhub``);
* an ``/etc`` that holds only what every local user may read: anything
  readable by its owner alone (``/etc/shadow``, SSH host keys, a Redis
  password) is left out. When envhub runs as root the sandbox's processes
  are the host's root to the kernel's file checks, so this is what keeps
  those files out of reach;
* nothing of envhub's own: its data folder (database, secret key, other
  environments), its install folder and its virtualenv are hidden even when
  they sit under a system folder (``/opt`` is not mounted at all).

Project variables reach only the sandboxed program: bubblewrap reads them,
with every other option, from a descriptor (``--args``, so values never show
in a command line), clears the launcher's environment (``--clearenv``) and
sets them (``--setenv``). bubblewrap itself starts with a fixed minimal
environment.

``unshare`` (own PID namespace, whole host filesystem) and ``none`` exist for
trusted code only and are never picked automatically: an operator sets
``ENVHUB_LOCAL_SANDBOX``. Without a working bubblewrap, environments fail with
``sandbox_unavailable``.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from envhub.domain.git_credentials import HELPER_PATH
from envhub.errors import SandboxUnavailable, ValidationFailed
from envhub.runtime.local.network import nameservers

SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32")
ETC = "/etc"
SANDBOX_WORKDIR = "/workspace"
SUPERVISOR = Path(__file__).with_name("supervisor.py")
GIT_HELPER = Path(__file__).with_name("git_credential_helper.py")
# The environment every launcher (bwrap, unshare, nsenter, setsid, the
# supervisor) starts with: nothing of envhub's own environment, nothing of
# the project's.
LAUNCHER_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
# Files under /etc the sandbox gets from envhub instead of the host.
_ETC_OWN = {"resolv.conf", "hosts"}
_HOSTS = b"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"

Network = Literal["inherit", "none"]


@dataclass(frozen=True, slots=True)
class Extras:
    """What one environment's sandboxes get beyond every sandbox's defaults.

    ``read_only``: (host path, path inside) pairs bound read-only, such as the
    browser envhub lends (``browser.py``). ``sealed``: folders inside that hold
    only those binds and are read-only themselves, so nothing can be added
    beside what was lent (a module planted on its import path). ``hosts``:
    names ``/etc/hosts`` maps to 127.0.0.1 inside, such as the host of the
    environment's own public URL, which it serves itself inside its network
    (``domain/browser.own_url_inside``).
    """

    read_only: tuple[tuple[str, str], ...] = ()
    sealed: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()

    def hosts_file(self) -> bytes:
        names = [name for name in self.hosts if name and not any(c.isspace() or c in "#\0" for c in name)]
        return _HOSTS + "".join(f"127.0.0.1\t{name}\n" for name in names).encode()


NO_EXTRAS = Extras()


def python_command() -> list[str]:
    """envhub's interpreter, isolated from PYTHON* variables and site-packages."""
    return [sys.executable, "-I", "-S"]


@dataclass(slots=True)
class Launch:
    """A command line and the descriptors it reads (memfds); close them once it has started."""

    argv: list[str]
    fds: list[int] = field(default_factory=list)

    def close(self) -> None:
        fds, self.fds = self.fds, []
        for fd in fds:
            os.close(fd)


def data_fd(data: bytes, name: str = "envhub") -> int:
    """An anonymous in-memory file holding ``data``, positioned at its start."""
    fd = os.memfd_create(name)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


@dataclass(frozen=True, slots=True)
class Sandbox:
    kind: str  # bwrap | unshare | none
    tool: str = ""  # absolute path of bwrap or unshare
    # envhub's own folders: never visible inside, even under a system folder.
    private_paths: tuple[Path, ...] = ()

    @property
    def workdir_inside(self) -> str | None:
        """The workspace path as the sandboxed process sees it (None: unchanged)."""
        return SANDBOX_WORKDIR if self.kind == "bwrap" else None

    @property
    def own_network(self) -> bool:
        """Whether environments get a network namespace of their own."""
        return self.kind == "bwrap"

    def command(
        self,
        argv: list[str],
        *,
        workspace: Path,
        env: dict[str, str],
        network: Network = "inherit",
        terminal: bool = False,
        extras: Extras = NO_EXTRAS,
    ) -> Launch:
        """The command line that runs ``argv`` inside this sandbox with exactly ``env``.

        ``network``: ``inherit`` keeps the caller's network namespace (the
        supervisor's, or the one nsenter joined); ``none`` gives the sandbox a
        fresh one with loopback only. It does not apply to ``unshare``/``none``,
        which use the host's network.

        ``terminal``: ``argv`` gets a PTY of its own as controlling terminal
        (job control, Ctrl-C). bwrap's ``--new-session`` would detach it from
        that PTY; it guards a *shared* terminal against keystroke injection
        (TIOCSTI), and a PTY that envhub made for this one shell is not shared.

        ``extras`` apply to bubblewrap only: the weaker sandboxes already see
        the whole host filesystem and the host's network.
        """
        if self.kind == "bwrap":
            return self._bwrap(
                argv, workspace=workspace, env=env, network=network, terminal=terminal, extras=extras
            )
        env_fd = data_fd(json.dumps(env).encode(), "envhub-env")
        inner = [*python_command(), str(SUPERVISOR), "exec", str(env_fd), "--", *argv]
        if self.kind == "unshare":
            inner = [self.tool, "--fork", "--pid", "--mount-proc", "--kill-child", "--", *inner]
        return Launch(inner, [env_fd])

    def _bwrap(
        self,
        argv: list[str],
        *,
        workspace: Path,
        env: dict[str, str],
        network: Network,
        terminal: bool,
        extras: Extras,
    ) -> Launch:
        launch = Launch([])
        try:
            args = [
                "--unshare-user", "--disable-userns", "--unshare-pid", "--unshare-ipc",
                "--unshare-uts", "--unshare-cgroup-try",
                "--unshare-net" if network == "none" else "--share-net",
                "--cap-drop", "ALL", "--die-with-parent",
                *([] if terminal else ["--new-session"]),
                "--clearenv",
            ]  # fmt: skip
            for key, value in env.items():
                args += ["--setenv", key, value]
            for path in SYSTEM_DIRS:
                args += ["--ro-bind-try", path, path]
            cover = Cover(launch)
            args += etc_args(cover)
            resolv = "".join(f"nameserver {address}\n" for address in nameservers()).encode()
            for name, data in (("resolv.conf", resolv), ("hosts", extras.hosts_file())):
                fd = data_fd(data, f"envhub-{name}")
                launch.fds.append(fd)
                args += ["--ro-bind-data", str(fd), f"{ETC}/{name}"]
            # git's credential helper (git_relay.py answers it), read-only: nothing in it is secret.
            helper = data_fd(GIT_HELPER.read_bytes(), "envhub-git-credential")
            launch.fds.append(helper)
            args += ["--perms", "0555", "--ro-bind-data", str(helper), HELPER_PATH]
            args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]  # noqa: S108 - a private tmpfs inside
            args += self._private_masks(cover)
            for folder in extras.sealed:
                args += ["--tmpfs", folder]
            for source, inside in extras.read_only:
                args += ["--ro-bind", source, inside]
            for folder in (ETC, *extras.sealed):  # the tmpfs under each, now that its entries are in place
                args += ["--remount-ro", folder]
            args += ["--bind", str(workspace), SANDBOX_WORKDIR, "--chdir", SANDBOX_WORKDIR]
            if any("\0" in arg for arg in args):  # it would split into more options for bwrap
                raise ValidationFailed("an environment variable contains a NUL character")
            args_fd = data_fd(b"".join(arg.encode() + b"\0" for arg in args), "envhub-bwrap-args")
            launch.fds.append(args_fd)
        except BaseException:
            launch.close()
            raise
        launch.argv = [self.tool, "--args", str(args_fd), "--", *argv]
        return launch

    def _private_masks(self, cover: Cover) -> list[str]:
        """A sealed cover over each of envhub's paths that a system mount would show."""
        roots = [(dest, Path(dest).resolve()) for dest in (*SYSTEM_DIRS, ETC) if os.path.lexists(dest)]
        masks: list[str] = []
        paths = {private.resolve() for private in self.private_paths}
        for path in sorted(paths):
            if any(path != other and path.is_relative_to(other) for other in paths):
                continue  # inside another hidden folder already
            for dest, source in roots:
                if source.is_relative_to(path):
                    raise SandboxUnavailable(
                        f"envhub's folder {path} contains the system folder {source}, which every "
                        "sandbox mounts; envhub cannot hide itself from environments",
                        hint="Install envhub and its data folder (ENVHUB_DATA_DIR) in a folder of their own.",
                        details={"path": str(path)},
                    )
                if path.is_relative_to(source) and path.exists():
                    masks += cover(str(Path(dest) / path.relative_to(source)), folder=path.is_dir())
        return masks


class Cover:
    """bwrap options that put an empty folder or file nobody may open over a path.

    Mode 000, and the sandbox has no capability to override it, so opening
    fails outright. A file cover reads its (empty) content from a memfd of its
    own: bwrap consumes the descriptor.
    """

    def __init__(self, launch: Launch) -> None:
        self._launch = launch

    def __call__(self, path: str, *, folder: bool) -> list[str]:
        if folder:
            return ["--perms", "0000", "--tmpfs", path]
        fd = data_fd(b"", "envhub-cover")
        self._launch.fds.append(fd)
        return ["--perms", "0000", "--ro-bind-data", str(fd), path]


def etc_args(cover: Cover, root: str = ETC) -> list[str]:
    """bwrap options that show ``/etc`` as any local user sees it.

    A tmpfs at /etc, then each world-readable entry bound read-only (symlinks
    recreated as symlinks); inside those, folders and files not readable by
    everyone are covered (see :class:`Cover`).
    """
    args = ["--tmpfs", root]
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.name in _ETC_OWN:
            continue
        info = entry.stat(follow_symlinks=False)
        if stat.S_ISLNK(info.st_mode):
            args += ["--symlink", os.readlink(entry.path), entry.path]
        elif stat.S_ISDIR(info.st_mode) and _world_enterable(info.st_mode):
            args += ["--ro-bind", entry.path, entry.path]
            args += _hidden_below(entry.path, cover)
        elif stat.S_ISREG(info.st_mode) and info.st_mode & stat.S_IROTH:
            args += ["--ro-bind", entry.path, entry.path]
    return args


def _world_enterable(mode: int) -> bool:
    return bool(mode & stat.S_IROTH and mode & stat.S_IXOTH)


def _hidden_below(top: str, cover: Cover) -> list[str]:
    args: list[str] = []
    for folder, dirs, files in os.walk(top, onerror=None, followlinks=False):
        for name in list(dirs):
            path = os.path.join(folder, name)
            info = os.lstat(path)
            if stat.S_ISDIR(info.st_mode) and not _world_enterable(info.st_mode):
                dirs.remove(name)
                args += cover(path, folder=True)
        for name in files:
            path = os.path.join(folder, name)
            info = os.lstat(path)
            if stat.S_ISREG(info.st_mode) and not info.st_mode & stat.S_IROTH:
                args += cover(path, folder=False)
    return args


def _probe(sandbox: Sandbox) -> str | None:
    """None when ``sandbox`` can run a program here, else what went wrong."""
    with tempfile.TemporaryDirectory(prefix="envhub-probe-") as workspace:
        launch = sandbox.command(["/bin/true"], workspace=Path(workspace), env={}, network="none")
        try:
            done = subprocess.run(
                launch.argv,
                capture_output=True,
                timeout=20,
                check=False,
                env=LAUNCHER_ENV,
                pass_fds=launch.fds,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return str(exc)
        finally:
            launch.close()
    if done.returncode != 0:
        return done.stderr.decode(errors="replace").strip()[-500:] or f"exit status {done.returncode}"
    return None


def detect_sandbox(preference: str = "auto", *, private_paths: Iterable[Path] = ()) -> Sandbox:
    """The sandbox to run environments in; raises :class:`SandboxUnavailable` when none fits.

    ``auto`` means bubblewrap or nothing: a weaker sandbox is used only when an
    operator asks for it by name.
    """
    private = tuple(private_paths)
    kind = "bwrap" if preference == "auto" else preference
    if kind == "none":
        return Sandbox("none", private_paths=private)
    tool = shutil.which(kind)
    if tool is None:
        raise SandboxUnavailable(
            f"{kind} is not installed on this machine, so environments cannot be isolated",
            details={"sandbox": kind},
        )
    sandbox = Sandbox(kind, tool, private)
    problem = _probe(sandbox)
    if problem is not None:
        raise SandboxUnavailable(
            f"{kind} does not work on this machine: {problem}", details={"sandbox": kind, "error": problem}
        )
    return sandbox
