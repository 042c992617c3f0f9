"""Child processes of the test cluster and where their binaries live."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
from pathlib import Path
from typing import IO

CACHE_DIR = Path(os.environ.get("ENVHUB_CLUSTER_CACHE", "/var/cache/envhub-testcluster"))
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager")


class BinariesMissing(RuntimeError):
    pass


def bin_dir() -> Path:
    """Directory with the three binaries (symlinks kept by build.sh)."""
    d = Path(os.environ.get("ENVHUB_CLUSTER_BIN", CACHE_DIR / "bin"))
    missing = [b for b in BINARIES if not os.access(d / b, os.X_OK)]
    if missing:
        raise BinariesMissing(
            f"{', '.join(missing)} not found in {d}: run tests/cluster/build.sh (a few minutes, once)"
        )
    return d


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_libc = ctypes.CDLL(None, use_errno=True)


def die_with_parent() -> None:
    """preexec_fn: SIGKILL this child when the thread that started it ends.

    If the test process is SIGKILLed, the control plane and pod processes must not
    outlive it holding ports and CPU. PR_SET_PDEATHSIG follows the *thread* that
    forked, so start a TestCluster from a thread that outlives it. (preexec_fn and
    threads: this only calls an already-resolved libc function, no Python locks.)
    """
    _libc.prctl(1, signal.SIGKILL)


class ChildProcess:
    """A child in its own process group, output to a log file."""

    def __init__(self, name: str, argv: list[str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log: IO[bytes] = self.log_path.open("wb")
        self.popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
            cwd=log_dir,
        )

    def check_alive(self) -> None:
        if self.popen.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
            except ProcessLookupError:
                pass
        self._log.close()
