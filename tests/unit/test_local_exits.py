"""runtime/local/exits.py: a supervisor's exit line as Kubernetes' lastState.terminated, and what
counts as a restart (an end by itself, or without a word) and what does not (envhub stopping it)."""

from __future__ import annotations

from pathlib import Path

from envhub.runtime.base import ContainerInfo, PodInfo
from envhub.runtime.local import exits
from envhub.services.inspection import workload_rows


def test_each_way_a_tree_ends_gets_the_reason_kubernetes_would_give() -> None:
    def said(**record: object) -> tuple[str, int | None, int | None]:
        ended = exits.termination({"pid": 1, "finished_at": 1.0, **record})
        assert ended is not None
        return ended.reason, ended.exit_code, ended.signal

    assert said(status=0) == ("Completed", 0, None)
    assert said(status=3) == ("Error", 3, None)
    assert said(status=139) == ("SIGSEGV", 139, 11)
    assert said(status=137, oom_kills=1) == ("OOMKilled", 137, 9)  # the memory cgroup counted it
    assert said(status=137, oom_kills=0) == ("SIGKILL", 137, 9)
    assert said() == ("Unknown", None, None)  # ended without a word
    assert exits.termination({"pid": 1, "stopped": True}) is None


def test_only_an_end_by_itself_counts_as_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "exit.json"
    assert exits.read(path, 10) is None  # none written: it ended without a word
    assert exits.after(2, None)[0] == 3
    path.write_text('{"pid": 10, "status": 3, "finished_at": 1.0}\n')
    assert exits.read(path, 11) is None  # another tree's line
    assert exits.after(0, exits.read(path, 10)) == (1, {"pid": 10, "status": 3, "finished_at": 1.0})
    exits.mark_stopped(path, 10)
    assert exits.after(5, exits.read(path, 10)) == (0, {})


def test_a_restarted_process_shows_its_count_and_last_exit_as_a_pods_container_does() -> None:
    ended = exits.termination({"pid": 1, "status": 134, "finished_at": 0.0})
    main = ContainerInfo(name="main", state="running", ready=True, restarts=4, last_termination=ended)
    [row] = workload_rows((PodInfo(name="pid 1", phase="Running", containers=(main,)),))
    assert row["restarts"] == "4"
    assert row["last_exit"].startswith("SIGABRT (exit 134)")  # the name once, not twice
