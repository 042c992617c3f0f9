"""The three things bench/terminal.py measures, each in its own process.

* ``pty``: no network at all. The benchmark's own event loop reads PTYs
  running bash (the four floods: a child process's loop): the ceiling on
  this machine.
* ``terminado``: Jupyter's terminal server (tornado), one terminal per socket.
* ``envhub``: envhub's own API app under Granian, as the launcher runs it,
  on a throwaway SQLite database with one environment.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from envhub.runtime.local.processes import free_port

ROOT = Path(__file__).resolve().parents[1]


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not start")


class Server:
    kind = ""
    token = ""  # sent as a bearer token, as the CLI does

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        raise NotImplementedError

    def url(self, session: str) -> str:
        raise NotImplementedError

    def processes(self) -> list[psutil.Process]:
        """The server's own processes (not the shells it runs)."""
        assert self.proc is not None
        root = psutil.Process(self.proc.pid)
        return [root, *[c for c in root.children(recursive=True) if "python" in c.name().lower()]]

    def cpu_seconds(self) -> float:
        total = 0.0
        for proc in self.processes():
            times = proc.cpu_times()
            total += times.user + times.system
        return total

    def rss(self) -> int:
        return sum(p.memory_info().rss for p in self.processes())

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


TERMINADO_APP = """
import sys, tornado.ioloop, tornado.web, terminado
manager = terminado.UniqueTermManager(shell_command=["bash"])
app = tornado.web.Application([(r"/websocket", terminado.TermSocket, {"term_manager": manager})])
app.listen(int(sys.argv[1]), "127.0.0.1")
tornado.ioloop.IOLoop.current().start()
"""


class Terminado(Server):
    kind = "terminado"

    def start(self) -> None:
        env = {**os.environ, "TERM": "xterm-256color"}
        argv = [sys.executable, "-c", TERMINADO_APP, str(self.port)]
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, self.proc)

    def url(self, session: str) -> str:
        return f"ws://127.0.0.1:{self.port}/websocket"


class Envhub(Server):
    kind = "envhub"
    environment_id = 0

    def _prepare(self) -> dict[str, str]:
        data = Path(tempfile.mkdtemp(prefix="envhub-data-", dir=self.workdir))  # one per round
        env = {k: v for k, v in os.environ.items() if not k.startswith("ENVHUB_")}
        env.update(
            ENVHUB_DATA_DIR=str(data),
            ENVHUB_DATABASE_URL=f"sqlite:///{data / 'envhub.db'}",
            ENVHUB_BASE_URL=f"http://localhost:{self.port}",
            ENVHUB_LOCAL_SANDBOX="none",  # terminado runs bash unsandboxed too
            ENVHUB_TERMINAL_RECORDING_LIMIT_MB="1000000",  # record everything, as in production
        )
        out = subprocess.run(
            [sys.executable, "-m", "bench.seed"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            raise RuntimeError(f"seeding envhub's database failed:\n{out.stderr}")
        environment_id, self.token = out.stdout.strip().splitlines()[-1].split()
        self.environment_id = int(environment_id)
        (data / "envs" / str(self.environment_id) / "workspace").mkdir(parents=True)
        return env

    def start(self) -> None:
        env = self._prepare()
        argv = [sys.executable, "-m", "granian", "--interface", "asgi", "--factory", "--host", "127.0.0.1"]
        argv += [
            "--port",
            str(self.port),
            "--workers",
            "1",
            "--log-level",
            "warning",
            "bench.servers:wired_api",
        ]
        self.proc = subprocess.Popen(
            argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_port(self.port, self.proc)

    def url(self, session: str) -> str:
        return (
            f"ws://127.0.0.1:{self.port}/ws/terminal/{self.environment_id}"
            f"?session={session}&client={session}c&cols=120&rows=40"
        )


def wired_api() -> Any:
    """envhub's API app with its adapters installed, as envhub's entry points start it."""
    from envhub.api.app import create_api
    from envhub.wiring import install

    install()
    return create_api()
