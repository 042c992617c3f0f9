"""The Kubernetes runtime's background-process scripts (``runtime/kubernetes/background.py``), run by
a real ``sh`` in a folder standing for the container's working directory, as exec would run them."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from envhub.errors import NotFound
from envhub.runtime.kubernetes import background
from envhub.runtime.kubernetes.background import Run
from tests.support.waiting import wait_for


@pytest.fixture
def run(tmp_path: Path) -> Run:
    def execute(argv: list[str], timeout: float) -> tuple[int | None, bytes]:
        done = subprocess.run(argv, cwd=tmp_path, capture_output=True, timeout=timeout, check=False)
        return done.returncode, done.stdout + done.stderr

    return execute


def test_a_process_runs_detached_its_output_is_read_by_offset_and_its_end_recorded(run: Run) -> None:
    background.start(run, "7", ["sh", "-c", "echo one; echo two >&2; exit 5"])
    wait_for(lambda: not background.state(run, "7").running, timeout=10, what="the process to end")
    assert background.state(run, "7").exit_code == 5
    everything = background.output(run, "7", 0, 100)
    assert (everything.data, everything.size) == (b"one\ntwo\n", 8)
    assert background.output(run, "7", 4, 2).data == b"tw"
    assert background.output(run, "7", 8, 10).data == b""
    with pytest.raises(NotFound):
        background.state(run, "8")
    with pytest.raises(NotFound):
        background.output(run, "8", 0, 10)


def test_stop_terms_the_process_and_kills_one_that_ignores_it(run: Run) -> None:
    background.start(run, "1", ["sh", "-c", "echo up; while :; do sleep 0.1; done"])
    wait_for(lambda: background.output(run, "1", 0, 10).data == b"up\n", timeout=10, what="it to start")
    assert background.state(run, "1").running
    background.stop(run, "1", 2)
    ended = background.state(run, "1")
    assert (ended.running, ended.exit_code) == (False, 143)

    background.start(run, "2", ["sh", "-c", "trap '' TERM; echo up; while :; do sleep 0.1; done"])
    wait_for(lambda: background.output(run, "2", 0, 10).data == b"up\n", timeout=10, what="it to start")
    began = time.monotonic()
    background.stop(run, "2", 1)
    stubborn = background.state(run, "2")
    assert (stubborn.running, stubborn.exit_code) == (False, 137)
    assert time.monotonic() - began < 10
    background.stop(run, "2", 1)  # an ended process: nothing to do
