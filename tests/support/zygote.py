"""envhub's server and worker processes for tests, forked from a warm interpreter.

A new interpreter spends about 8 s of CPU importing envhub's API app (its pydantic
models, the MCP SDK, the Kubernetes and Cloudflare clients) before it serves a
request, and the suite starts such a process for a hundred tests. Each test
process keeps one *zygote*: an interpreter that has imported envhub (and nothing
settings-dependent: no settings read, no adapter built, no app made) and forks a
child per :func:`spawn`. The child is what ``python -m <module> <args>`` in a new
interpreter would be: its own environment, working directory, session and log,
``sys.argv`` as given; the test's app module (the one that builds the app from
the settings) is imported by the child, after its environment is in place.

:class:`Forked` stands in for :class:`subprocess.Popen` (``pid``, ``poll``,
``wait``, ``terminate``, ``kill``, ``returncode``): the zygote reaps its children
and writes each exit status where the test process reads it.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from envhub.config import PROJECT_ROOT

# Imported once by the zygote; each import is independent of the settings.
WARM = (
    "envhub.api.app",
    "envhub.launcher",
    "envhub.jobs.worker",
    "envhub.jobs.reconciler",
    "granian",
    "granian.cli",
    "granian.server.mp",
    "uvicorn",
)


class Forked:
    """A process the zygote forked, as far as tests use :class:`subprocess.Popen`."""

    def __init__(self, pid: int, status_dir: Path, args: list[str]) -> None:
        self.pid, self.args = pid, args
        self._status = status_dir / str(pid)
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and self._status.exists():
            text = self._status.read_text()
            if text:  # written whole by the zygote; empty only for an instant
                self.returncode = int(text)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(self.args, timeout or 0)
            time.sleep(0.02)
        return self.returncode or 0

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class Zygote:
    """The test process's zygote: started on first use, stopped when the test process ends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._folder = Path(tempfile.mkdtemp(prefix="envhub-zygote-"))
        self.socket_path = self._folder / "zygote.sock"
        self.status_dir = self._folder / "status"

    def _started(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        self.status_dir.mkdir(exist_ok=True)
        log = self._folder / "zygote.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ENVHUB_")}
        env["PYTHONPATH"] = str(PROJECT_ROOT)
        with log.open("ab") as out:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "tests.support.zygote", str(self.socket_path), str(self.status_dir)],
                cwd=PROJECT_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        atexit.register(self.stop)
        deadline = time.monotonic() + 180
        while not self.socket_path.exists():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the test zygote did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.05)

    def spawn(self, module: str, args: list[str], *, env: dict[str, str], cwd: Path, log: Path) -> Forked:
        """``python -m module *args`` with ``env`` in ``cwd``, output added to ``log``, own session."""
        request = {"module": module, "args": args, "env": env, "cwd": str(cwd), "log": str(log)}
        with self._lock:
            self._started()
            with socket.socket(socket.AF_UNIX) as connection:
                connection.connect(str(self.socket_path))
                connection.sendall(json.dumps(request).encode() + b"\n")
                answer = connection.makefile("rb").readline()
        if not answer:
            raise AssertionError(f"the test zygote did not fork {module}")
        return Forked(int(json.loads(answer)["pid"]), self.status_dir, [module, *args])

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(10)


_zygote = Zygote()


def spawn(module: str, args: list[str], *, env: dict[str, str], cwd: Path, log: Path) -> Forked:
    """A process forked from this test process's zygote (see the module's docstring)."""
    return _zygote.spawn(module, args, env=env, cwd=cwd, log=log)


# -- the zygote itself ------------------------------------------------------------


def _reap(status_dir: Path) -> None:
    """Write the exit status of every child that ended (the test side's ``returncode``)."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        code = os.waitstatus_to_exitcode(status)
        partial = status_dir / f".{pid}"
        partial.write_text(str(code))
        partial.rename(status_dir / str(pid))


def _become(request: dict[str, Any]) -> None:
    """In the forked child: take the request's place, as a fresh ``python -m`` would start."""
    import runpy

    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.setsid()
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    out = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(null)
    os.close(out)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 (the process's own stdout)
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = [request["module"], *request["args"]]
    # Run as a new interpreter would: the module's own code afresh as __main__ (its imports stay
    # warm), without runpy's warning about a module already imported.
    sys.modules.pop(request["module"], None)
    runpy.run_module(request["module"], run_name="__main__", alter_sys=True)


def _serve(socket_path: Path, status_dir: Path) -> None:
    import importlib

    for name in WARM:
        importlib.import_module(name)
    from envhub import config

    # Nothing read the settings while warming: each child reads its own.
    assert config._cached_settings.cache_info().currsize == 0, "warming read the settings"
    assert threading.active_count() == 1, f"warming started threads: {threading.enumerate()}"

    signal.signal(signal.SIGCHLD, lambda *_: _reap(status_dir))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(socket_path.with_suffix(".tmp")))
    listener.listen(16)
    os.rename(socket_path.with_suffix(".tmp"), socket_path)  # ready once it exists
    while True:
        connection, _ = listener.accept()
        with connection:
            request = json.loads(connection.makefile("rb").readline())
            pid = os.fork()
            if pid == 0:
                listener.close()
                connection.close()
                code = 0
                try:
                    _become(request)
                except SystemExit as stop:
                    code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
                except BaseException:
                    import traceback

                    traceback.print_exc()
                    code = 1
                finally:
                    with contextlib.suppress(Exception):
                        sys.stdout.flush()
                        sys.stderr.flush()
                    os._exit(code)
            connection.sendall(json.dumps({"pid": pid}).encode() + b"\n")


if __name__ == "__main__":
    _serve(Path(sys.argv[1]), Path(sys.argv[2]))
