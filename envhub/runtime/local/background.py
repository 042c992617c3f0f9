"""Background processes of a local environment: started beside the app, outliving any call.

An exec session's sandbox dies with its session, so a process an agent wants
kept running (a dev server, a watcher) is started here instead: the same
sandboxed launch as a shell (``launching.shell_launch``), under envhub's own
wrapper (``output_cap.py``), which sends the output to a file kept under a
size limit (the oldest output is dropped; offsets keep their meaning) and,
when the sandbox ends, writes its exit status beside it. It runs in a session of
its own, so neither the API call that started it nor envhub restarting takes
it along; its pid and start time are recorded so a recycled pid is never
mistaken for it. Everything lives in ``<environment>/background/`` (outside the
workspace), and is gone with the environment.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from pathlib import Path

import psutil

from envhub.errors import NotFound
from envhub.private_files import private_dir, write_private
from envhub.runtime.base import BackgroundState
from envhub.runtime.local import output_cap, processes
from envhub.runtime.local.output_cap import Kept
from envhub.runtime.local.sandbox import LAUNCHER_ENV, Launch, python_command

WRAPPER = Path(output_cap.__file__)
DEFAULT_OUTPUT_LIMIT = 16 * 1024 * 1024
_SPAWN_WAIT = 5.0  # seconds a new wrapper may take to start its sandbox


def folder(environment_dir: Path) -> Path:
    return environment_dir / "background"


def start(
    environment_dir: Path, key: str, launch: Launch, *, cwd: Path, output_limit: int = DEFAULT_OUTPUT_LIMIT
) -> None:
    base = private_dir(folder(environment_dir))
    out, status, record = base / f"{key}.log", base / f"{key}.exit", base / f"{key}.json"
    status.unlink(missing_ok=True)
    output_cap.create(str(out))
    wrapper = [*python_command(), str(WRAPPER), "run", str(out), str(status), str(output_limit)]
    wrapper += [",".join(str(fd) for fd in launch.fds), "--"]
    process = subprocess.Popen(
        [*wrapper, *launch.argv],
        cwd=cwd,
        env=LAUNCHER_ENV,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
        pass_fds=tuple(launch.fds),
    )
    created = psutil.Process(process.pid).create_time()
    write_private(record, json.dumps({"pid": process.pid, "create_time": created}))


def state(environment_dir: Path, key: str) -> BackgroundState:
    base = folder(environment_dir)
    status = base / f"{key}.exit"
    if status.exists():
        text = status.read_text().strip()
        return BackgroundState(running=False, exit_code=int(text) if text.lstrip("-").isdigit() else None)
    if _wrapper(base, key) is not None:
        return BackgroundState(running=True)
    # Ended without a word (the machine restarted, or it was killed with envhub's own processes).
    return BackgroundState(running=False, exit_code=None)


def output(environment_dir: Path, key: str, offset: int, limit: int) -> Kept:
    _known(folder(environment_dir), key)
    return output_cap.read(str(folder(environment_dir) / f"{key}.log"), offset, limit)


def stop(environment_dir: Path, key: str, grace: float) -> None:
    wrapper = _wrapper(folder(environment_dir), key)
    if wrapper is None:
        return
    # The sandbox below the wrapper, so the wrapper lives on to write how it ended. A wrapper
    # only just started may not have started the sandbox yet: give it a moment to.
    with contextlib.suppress(psutil.Error):
        deadline = time.monotonic() + _SPAWN_WAIT
        children = wrapper.children()
        while not children and wrapper.is_running() and time.monotonic() < deadline:
            time.sleep(0.02)
            children = wrapper.children()
        for child in children:
            processes.kill_tree(child, grace=grace)
    with contextlib.suppress(psutil.Error):
        wrapper.wait(grace + 5)


def stop_all(environment_dir: Path) -> None:
    base = folder(environment_dir)
    if not base.is_dir():
        return
    for record in base.glob("*.json"):
        stop(environment_dir, record.stem, grace=1.0)


def _known(base: Path, key: str) -> dict[str, float]:
    try:
        found: dict[str, float] = json.loads((base / f"{key}.json").read_text())
    except (FileNotFoundError, ValueError) as exc:
        raise NotFound(f"no background process {key} in this environment") from exc
    return found


def _wrapper(base: Path, key: str) -> psutil.Process | None:
    record = _known(base, key)
    return processes.find_process(
        processes.ProcessState(
            pid=int(record["pid"]),
            create_time=float(record["create_time"]),
            port=0,
            generation=0,
            sandbox="",
            started_at=0.0,
        )
    )
