"""How an environment's process tree ended, and how many times it was started again after it did.

The supervisor writes one line to ``exit.json`` when the app ends by itself
(``supervisor.py``): its pid, the exit status, the time and the OOM kills its
memory cgroup counted. When envhub stops a tree itself (sleep, a redeploy,
deletion) it writes ``{"pid": ..., "stopped": true}`` instead. The next start
reads the line of the tree before it:

* the tree ended by itself: a restart, as a kubelet counts one; the count
  goes up and the line becomes the last state (the reason, exit code, signal);
* envhub stopped it: a fresh start (a new pod, on Kubernetes), counting from 0;
* no line for that tree: it ended without a word (its supervisor was killed,
  the machine restarted), a restart whose reason is ``Unknown``.
"""

from __future__ import annotations

import contextlib
import json
import signal
import time
from pathlib import Path
from typing import Any

from envhub.domain import humanize as fmt
from envhub.private_files import write_private
from envhub.runtime.base import LastTermination

_SIGNALLED = 128  # a shell's and bubblewrap's convention: 128 + n when signal n ended the program


def read(path: Path, pid: int) -> dict[str, Any] | None:
    """The line the tree whose supervisor was ``pid`` left, or None when it left none."""
    try:
        record = json.loads(path.read_text() or "null")
    except (FileNotFoundError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("pid") == pid else None


def mark_stopped(path: Path, pid: int) -> None:
    """envhub stopped the tree of supervisor ``pid`` itself: its next start is no restart."""
    with contextlib.suppress(OSError):
        write_private(path, json.dumps({"pid": pid, "stopped": True, "finished_at": time.time()}) + "\n")


def after(restarts: int, record: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
    """(restarts, last state) of a start that follows a tree which ended as ``record`` says."""
    if record is not None and record.get("stopped"):
        return 0, {}
    return restarts + 1, record or {"finished_at": time.time()}


def termination(record: dict[str, Any]) -> LastTermination | None:
    """A supervisor's line as Kubernetes' ``lastState.terminated``; None for a tree envhub stopped."""
    if not record or record.get("stopped"):
        return None
    finished = record.get("finished_at")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(finished)) if finished else ""
    status = record.get("status")
    if not isinstance(status, int):
        return LastTermination(exit_code=None, reason="Unknown", finished_at=stamp)
    number = status - _SIGNALLED if _SIGNALLED < status < _SIGNALLED + 65 else None
    if number == signal.SIGKILL and record.get("oom_kills"):
        reason = "OOMKilled"
    elif number is not None:
        reason = fmt.signal_name(number)
    else:
        reason = "Completed" if status == 0 else "Error"
    return LastTermination(exit_code=status, reason=reason, finished_at=stamp, signal=number)
