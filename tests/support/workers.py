"""Real ``python -m envhub.launcher worker`` processes for job tests."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import psutil

from envhub.config import PROJECT_ROOT, Settings
from tests.support import zygote
from tests.support.waiting import wait_for

WORKER_SETTINGS = {"ENVHUB_RECONCILE_INTERVAL": "0.5", "ENVHUB_JOB_STALE_AFTER": "2"}


def _dead(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def worker_environment(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENVHUB_")}
    env.update(
        PYTHONPATH=str(PROJECT_ROOT),
        PYTHONUNBUFFERED="1",
        ENVHUB_DATABASE_URL=settings.database_url,
        ENVHUB_REDIS_URL=settings.redis_url,
        ENVHUB_DATA_DIR=str(settings.data_dir),
        ENVHUB_QUEUE_NAME=settings.queue_name,
        ENVHUB_BASE_URL=settings.base_url,
        ENVHUB_HEALTH_TIMEOUT=str(settings.health_timeout),
        **WORKER_SETTINGS,
    )
    return env


class Workers:
    """Starts workers in their own sessions; kills whatever is left at the end."""

    def __init__(self, settings: Settings, log_dir: Path, extra: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.extra = extra or {}  # more ENVHUB_* settings for the workers
        self.log_path = log_dir / "workers.log"
        self.procs: list[zygote.Forked] = []

    def start(self) -> zygote.Forked:
        proc = zygote.spawn(
            "envhub.launcher",
            ["worker"],
            env={**worker_environment(self.settings), **self.extra},
            cwd=self.log_path.parent,  # no stray .env file
            log=self.log_path,
        )
        self.procs.append(proc)
        return proc

    def kill(self, proc: zygote.Forked) -> list[int]:
        """SIGKILL the worker and the processes of its session (its reconciler process), as a crash
        or OOM kill would. Environment processes run in sessions of their own and survive, exactly as
        on a real machine.
        """
        family = [proc.pid]
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(proc.pid).children(recursive=True):
                with contextlib.suppress(OSError):
                    if os.getsid(child.pid) == proc.pid:
                        family.append(child.pid)
        for pid in family:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait(30)
        wait_for(lambda: all(_dead(pid) for pid in family), what="the killed worker processes to die")
        return family

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                self.kill(proc)

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no worker log)"
        return "--- worker log (tail) ---\n" + "\n".join(text.splitlines()[-lines:])
