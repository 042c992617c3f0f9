"""How a local environment's processes are isolated.

Preference order: bubblewrap (own mount, PID, IPC and UTS namespaces; read-only
system; only the workspace writable), then ``unshare`` (own PID namespace), then
a plain process group. The last one isolates nothing, so it is logged loudly.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/etc", "/opt")
SANDBOX_WORKDIR = "/workspace"


@dataclass(frozen=True, slots=True)
class Sandbox:
    kind: str  # bwrap | unshare | none

    def wrap(self, argv: list[str], *, workspace: Path, terminal: bool = False) -> list[str]:
        """The command line that runs ``argv`` inside this sandbox.

        ``terminal``: ``argv`` gets a PTY of its own as controlling terminal
        (job control, Ctrl-C). bwrap's ``--new-session`` would detach it from
        that PTY; it guards a *shared* terminal against keystroke injection
        (TIOCSTI), and a PTY that envhub made for this one shell is not shared.
        """
        if self.kind == "bwrap":
            binds: list[str] = []
            for path in _SYSTEM_DIRS:
                binds += ["--ro-bind-try", path, path]
            return [
                "bwrap", "--unshare-all", "--share-net", *([] if terminal else ["--new-session"]),
                *binds,
                "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",  # noqa: S108 - a private tmpfs inside the sandbox
                "--bind", str(workspace), SANDBOX_WORKDIR,
                "--chdir", SANDBOX_WORKDIR,
                "--", *argv,
            ]  # fmt: skip
        if self.kind == "unshare":
            return ["unshare", "--fork", "--pid", "--mount-proc", "--kill-child", "--", *argv]
        return argv

    @property
    def workdir_inside(self) -> str | None:
        """The workspace path as the sandboxed process sees it (None: unchanged)."""
        return SANDBOX_WORKDIR if self.kind == "bwrap" else None


def _works(argv: list[str]) -> bool:
    try:
        done = subprocess.run(argv, capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def detect_sandbox(preference: str = "auto") -> Sandbox:
    """Pick the strongest sandbox that actually works on this machine."""
    candidates = ["bwrap", "unshare", "none"] if preference == "auto" else [preference]
    for kind in candidates:
        if kind == "bwrap" and shutil.which("bwrap"):
            probe = Sandbox("bwrap").wrap(["/bin/true"], workspace=Path(tempfile.gettempdir()))
            if _works(probe):
                return Sandbox("bwrap")
        elif kind == "unshare" and shutil.which("unshare"):
            if _works(Sandbox("unshare").wrap(["/bin/true"], workspace=Path(tempfile.gettempdir()))):
                return Sandbox("unshare")
        elif kind == "none":
            break
        if preference != "auto":
            log.warning("sandbox %r requested but not usable here; falling back", kind)
    log.warning(
        "no sandbox available (install bubblewrap): local environments run as plain "
        "process groups with no isolation"
    )
    return Sandbox("none")
